"""Every generator, the preference steps and the judge through the local ``transformers``
backend, with the tiny random-init Llama that tests/core/test_llm_transformers.py builds. Its
output is noise: JSON answers fail validation after the repair turn and land in quarantine,
counted; free-text answers become rows. Nothing crashes, nothing is lost."""

from __future__ import annotations

import json

import pytest
from generators_testkit import (
    CONSULTATIONS,
    KG,
    NOTES,
    PASSAGES,
    make_row,
    output_rows,
    quarantine,
    step_stats,
)
from testutil import read_jsonl

from meddata import registry
from meddata.records import messages, validate_row
from meddata.steps import Quarantine, StepContext


def _consultations(n: int) -> list[dict]:
    items = json.loads(CONSULTATIONS.read_text())[:n]
    return [make_row(locator=f"item {i}", messages=messages(("user", o["input"]), ("assistant", o["output"])))
            for i, o in enumerate(items)]


def _kg_rows() -> list[dict]:
    out = []
    for i, line in enumerate(KG.read_text().splitlines()[1:3]):
        head, rel, tail = line.split("\t")
        row = make_row(locator=f"line {i + 2}", messages=messages(("user", f"What is the {rel} of {head}?"),
                                                                   ("assistant", f"The {rel} of {head}: {tail}.")))
        row["meta"]["annotations"] = json.dumps({"head": head, "relation": rel})
        out.append(row)
    return out


ROWS = {
    "passages": lambda: [make_row(locator=f"line {i}", text=p["text"]) for i, p in enumerate(read_jsonl(PASSAGES)[:2])],
    "notes": lambda: [make_row(locator=f"line {i}", phi_status="deidentified", text=n["transcription"])
                      for i, n in enumerate(read_jsonl(NOTES)[:2])],
    "consultations": lambda: _consultations(2),
    "kg": _kg_rows,
}
CASES = [
    ("self_instruct", {"tasks_per_request": 1, "demos": 1}, "consultations"),
    ("evol_instruct", {}, "consultations"),
    ("passage_dialogue", {}, "passages"),
    ("note_tasks", {"tasks": ["summary", "medication_list"]}, "notes"),
    ("rewrite_answer", {}, "consultations"),
    ("kg_dialogue", {}, "kg"),
    ("translate", {"language": "French"}, "consultations"),
    ("preference_rank", {"k": 2, "judge_max_tokens": 8}, "consultations"),
    ("judge", {}, "consultations"),
]


@pytest.fixture(scope="module")
def tiny_ctx(tiny_model, tmp_path_factory):  # noqa: F811
    """One context for every case, so the client (and the model) is loaded once."""
    tmp = tmp_path_factory.mktemp("tiny-ctx")
    config = {"backend": "transformers", "model_path": str(tiny_model), "device": "cpu", "batch_size": 8,
              "cache": str(tmp / "cache.sqlite")}
    return StepContext(step_dir=tmp, llm_configs={"tiny": config})


@pytest.mark.parametrize("name,params,rows", CASES, ids=[c[0] for c in CASES])
def test_json_steps_quarantine_noise_with_the_reason(tiny_ctx, name, params, rows):
    step = registry.all_steps()[name]({"llm": "tiny", "max_tokens": 8, **params})
    step.ensure_setup(tiny_ctx)
    inputs = ROWS[rows]()
    outcomes = step.process_batch(inputs, tiny_ctx)
    stats = step.take_stats()
    assert len(outcomes) == len(inputs)
    sent = stats.get("llm.requests", 0) + stats.get("judge.llm.requests", 0)
    assert sent >= len(inputs) and stats.get("llm.prompt_tokens", 0) + stats.get("llm.cached", 0) > 0
    for out in outcomes:
        # preference_rank may find its 2 samples identical (a Drop); everything else is noise JSON
        if name == "preference_rank" and not isinstance(out, Quarantine):
            assert out.reason == "identical_samples"
            continue
        assert isinstance(out, Quarantine), type(out)
        assert "invalid JSON output after one repair retry" in out.error


def test_free_text_answers_become_preference_pairs_in_a_build(tiny_model, tmp_path, build):  # noqa: F811
    recipe = {
        "name": "tiny-pref",
        "llms": {"tiny": {"backend": "transformers", "model_path": str(tiny_model), "device": "cpu",
                          "batch_size": 4, "cache": str(tmp_path / "cache.sqlite")}},
        "inputs": [{"builder": "table", "path": str(CONSULTATIONS), "columns": {"user": "input", "assistant": "output"}}],
        "steps": [{"preference_physician": {"llm": "tiny", "max_tokens": 8, "temperature": 0.7, "seed": 1}}],
        "output": {"card": False},
    }
    result = build(recipe, limit=3)
    phys = step_stats(result, "preference_physician")
    assert phys.rows_in == 3 and phys.counters["llm.completion_tokens"] > 0
    # free text: noise is still an answer (an empty one is quarantined with its reason)
    assert phys.rows_out + phys.quarantined + sum(phys.dropped.values()) == 3
    for e in quarantine(result):
        assert e["step"] == "preference_physician" and "the model's answer is empty" in e["error"]
    assert len(output_rows(result)) == phys.rows_out == result.totals["out"]
    for row in output_rows(result):
        assert validate_row(row) == "preference" and row["rejected"][0]["content"].strip()
