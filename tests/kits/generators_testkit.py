"""Shared pieces of the generator, preference and judge tests: recipes, inputs and rows
for builds against the local OpenAI-protocol server (tests/kits/llm_server.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from llm_server import LLMServer
from testutil import DATA, read_jsonl

from meddata.records import new_meta, new_row
from meddata.steps import StepContext

GEN = DATA / "generators"
PASSAGES = GEN / "openstax_passages.jsonl"
NOTES = GEN / "mtsamples_notes.jsonl"
RAW_NOTES = GEN / "synthea_notes_raw.jsonl"
CONSULTATIONS = GEN / "consultations.json"
KG = GEN / "kg_facts.tsv"


def server_fixture(server_cls: type = LLMServer):
    """A fixture running a local OpenAI-protocol server (tests/kits/llm_server.py, or a subclass such as
    llm_canned.SamplingServer) for one test. In a test module: ``server = server_fixture()``."""

    @pytest.fixture
    def running():
        srv = server_cls().start()
        yield srv
        srv.stop()

    return running


def llms(url: str, tmp_path: Path, name: str = "local", **extra) -> dict:
    return {name: {"model": "fake-med", "base_url": url, "cache": str(tmp_path / "cache.sqlite"),
                   "backoff_base": 0.01, "max_concurrency": 8, **extra}}


def recipe(name: str, inputs: list[dict], steps: list, llm: dict) -> dict:
    return {"name": name, "llms": llm, "inputs": inputs, "steps": steps, "output": {"card": False}}


def output_rows(result) -> list[dict]:
    return [row for f in sorted((result.out_dir / "jsonl").glob("*.jsonl")) for row in read_jsonl(f)]


def quarantine(result) -> list[dict]:
    path = result.out_dir / "quarantine.jsonl"
    return read_jsonl(path) if path.exists() else []


def dropped(result, step: str) -> list[dict]:
    return [r for f in (result.out_dir / "dropped").glob(f"*{step}.jsonl") for r in read_jsonl(f)]


def passages_input(**extra) -> dict:
    return {"builder": "table", "path": str(PASSAGES), "source": "openstax", "licence": "CC-BY-NC-SA-4.0",
            "columns": {"id": "id", "text": "text"}, **extra}


def consultations_input(**extra) -> dict:
    return {"builder": "table", "path": str(CONSULTATIONS), "source": "consult", "licence": "CC0-1.0",
            "columns": {"user": "input", "assistant": "output"}, **extra}


def notes_input(**extra) -> dict:
    return {"builder": "table", "path": str(NOTES), "source": "mtsamples", "phi_status": "deidentified",
            "columns": {"id": "note_id", "text": "transcription"}, **extra}


def kg_input(**extra) -> dict:
    return {"builder": "kg", "path": str(KG), "licence": "CC0-1.0", **extra}


def make_row(locator: str = "line 1", phi_status: str = "not_applicable", **content) -> dict:
    meta = new_meta(builder="test", file="items.jsonl", locator=locator, phi_status=phi_status)
    return new_row(source="t", meta=meta, **content)


def context(tmp_path: Path, url: str, **extra) -> StepContext:
    return StepContext(step_dir=tmp_path, llm_configs=llms(url, tmp_path, **extra))


def step_stats(result, name: str):
    return next(s for s in result.steps if s.name == name)
