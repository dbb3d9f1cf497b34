"""The example recipes examples/recipes/augment_more.yaml and augment_preference.yaml run
end to end against the local OpenAI-protocol server, pointed there by environment variables
as a user would point them at vLLM or Ollama."""

from __future__ import annotations

import pytest
import yaml
from generators_testkit import output_rows, step_stats
from llm_canned import SamplingServer
from testutil import EXAMPLES

from meddata.records import annotations, validate_row

RECIPES = EXAMPLES / "recipes"


@pytest.fixture
def server(monkeypatch, tmp_path):
    srv = SamplingServer().start()
    for var in ("MEDDATA_LLM_BASE_URL", "MEDDATA_JUDGE_BASE_URL"):
        monkeypatch.setenv(var, srv.url)
    for var in ("MEDDATA_LLM_MODEL", "MEDDATA_JUDGE_MODEL"):
        monkeypatch.setenv(var, "fake-med")
    monkeypatch.setenv("MEDDATA_CACHE_DIR", str(tmp_path / "cache"))
    yield srv
    srv.stop()


def _load(name: str) -> dict:
    data = yaml.safe_load((RECIPES / name).read_text())
    data["output"]["card"] = False
    return data


def test_augment_more_recipe(server, build):
    result = build(_load("augment_more.yaml"), base_dir=RECIPES, limit=3)
    names = [s.name for s in result.steps]
    for step in ("self_instruct", "evol_instruct", "passage_dialogue", "note_tasks", "kg_dialogue",
                 "rewrite_answer", "judge", "translate"):
        assert step in names
        assert step_stats(result, step).counters.get("llm.requests", 0) > 0, step
    rows = output_rows(result)
    assert rows and result.totals["out"] == len(rows)
    prompt_ids = {r["meta"]["prompt_id"] for r in rows}
    assert {"self_instruct.v1", "passage_dialogue.v1", "note_tasks.v1", "kg_dialogue.v1"} & prompt_ids
    by_id = {r["id"]: r for r in rows}
    for row in rows:
        validate_row(row)
        ann = annotations(row)
        if "translate.language" in ann:  # a translation of a row the judge passed
            ann = annotations(by_id[ann["generated_from"]])
        assert ann["judge"]["passed"] is True
    # each generator stayed on its own source: passages never became note tasks
    for row in rows:
        if row["meta"]["prompt_id"] == "note_tasks.v1":
            assert row["source"] == "mtsamples"
        if row["meta"]["prompt_id"] == "passage_dialogue.v1":
            assert row["source"] == "openstax-ap2e"


def test_augment_preference_recipe(server, build):
    result = build(_load("augment_preference.yaml"), base_dir=RECIPES, limit=3)
    rows = output_rows(result)
    kinds = {r["meta"]["builder"] for r in rows}
    assert kinds == {"seed_tasks", "table"}
    assert all(validate_row(r) == "preference" for r in rows)
    assert step_stats(result, "preference_rank").counters["judge.llm.requests"] > 0
