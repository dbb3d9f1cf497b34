"""Both reference generators through the local ``transformers`` backend, with a tiny
random-init Llama and a tokenizer trained here: the output is noise, so every answer fails
JSON validation after its repair turn and must land in quarantine, counted, never crash."""

from __future__ import annotations

import json

import pytest
from testutil import DATA, read_jsonl

from meddata import registry

PASSAGES = DATA / "llm" / "openstax_passages.jsonl"
MCQ = DATA / "llm" / "medmcqa_sample.jsonl"


@pytest.mark.skipif("exam" not in registry.all_steps(), reason="the 'exam' builder is not installed")
def test_generators_run_through_the_transformers_backend(tiny_model, tmp_path, build):
    recipe = {
        "name": "local-llm",
        "llms": {"tiny": {"backend": "transformers", "model_path": str(tiny_model), "device": "cpu",
                          "batch_size": 4, "cache": str(tmp_path / "cache.sqlite")}},
        "inputs": [
            {"builder": "table", "path": str(PASSAGES), "columns": {"id": "id", "text": "text"}},
            {"builder": "exam", "path": str(MCQ), "format": "medmcqa"},
            {"builder": "table", "path": str(MCQ), "columns": {"user": "question", "assistant": "answer"}},
        ],
        "steps": [{"passage_qa": {"llm": "tiny", "max_tokens": 12}}, {"mcq_rationale": {"llm": "tiny", "max_tokens": 12}}],
        "output": {"card": False},
    }
    result = build(recipe, limit=5)
    qa, mcq = result.steps[-2], result.steps[-1]
    for step, others in ((qa, 10), (mcq, 5)):
        c = step.counters
        assert c["llm.requests"] == 5 and c["llm.invalid_output"] == 5 == step.quarantined
        assert c["llm.prompt_tokens"] > 0 and c["llm.completion_tokens"] > 0
        assert c[f"{step.name}.other_rows"] == others  # rows of the other inputs passed through
    assert result.totals["out"] == 5  # the conversation rows; nothing lost silently
    entries = read_jsonl(result.out_dir / "quarantine.jsonl")
    assert len(entries) == 10
    assert all("invalid JSON output after one repair retry" in e["error"] for e in entries)
    assert any(json.loads(e["error"].split("raw output: ", 1)[1]).strip() for e in entries)  # it did generate
    # a second run is answered from the cache (content failures are answers too)
    again = build(recipe, out=tmp_path / "again", limit=5)
    assert again.steps[-2].counters["llm.cached"] == 5 and "llm.prompt_tokens" not in again.steps[-2].counters
