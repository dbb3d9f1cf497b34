"""passage_qa and mcq_rationale end to end: real recipes, the real openai client, the local
OpenAI-protocol server; provenance, drops, quarantine, token accounting, template overrides,
and the example recipe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from llm_server import LLMServer
from meddata.builders.generators.mcq_rationale import MCQRationale
from meddata.builders.generators.passage_qa import PassageQA, refers_to_source, strip_reference
from testutil import DATA, EXAMPLES, read_jsonl

from meddata import registry
from meddata.recipe import RecipeError
from meddata.records import annotations, messages, new_meta, new_row, validate_row
from meddata.steps import Drop, Quarantine, StepContext

PASSAGES = DATA / "llm" / "openstax_passages.jsonl"
MCQ = DATA / "llm" / "medmcqa_sample.jsonl"
NOTES = DATA / "llm" / "synthea_notes_sample.jsonl"

needs_exam = pytest.mark.skipif("exam" not in registry.all_steps(), reason="the 'exam' builder is not installed")


@pytest.fixture
def server():
    srv = LLMServer().start()
    yield srv
    srv.stop()


def llms(server: LLMServer, tmp_path: Path, **extra) -> dict:
    return {"local": {"model": "fake-med", "base_url": server.url, "cache": str(tmp_path / "cache.sqlite"),
                      "backoff_base": 0.01, "max_concurrency": 8, "prices": {"input_per_1k": 1.0, "output_per_1k": 2.0},
                      **extra}}


def passages_input(**extra) -> dict:
    return {"builder": "table", "path": str(PASSAGES), "source": "openstax", "licence": "CC-BY-NC-SA-4.0",
            "columns": {"id": "id", "text": "text"}, **extra}


def recipe(name: str, inputs: list[dict], steps: list, llm: dict) -> dict:
    """A test recipe (no dataset card: these tests are about the LLM steps)."""
    return {"name": name, "llms": llm, "inputs": inputs, "steps": steps, "output": {"card": False}}


def output_rows(result) -> list[dict]:
    return [row for f in sorted((result.out_dir / "jsonl").glob("*.jsonl")) for row in read_jsonl(f)]


def test_passage_qa_builds_grounded_conversations(server, tmp_path, build):
    first = read_jsonl(PASSAGES)[0]["text"]
    server.add_fault("bad_content", count=None, match=first[:60])  # one passage always gets broken JSON
    result = build(recipe("qa", [passages_input()], [{"passage_qa": {"llm": "local", "per_passage": 3}}],
                          llms(server, tmp_path)))
    step = result.steps[-1]
    assert step.rows_in == 16 and step.quarantined == 1 and step.dropped == {}
    rows = output_rows(result)
    counters = step.counters
    # 15 good answers of 3 pairs; pairs repeating a question of the same passage are rejected
    assert counters["passage_qa.pairs"] + counters.get("passage_qa.pairs_rejected.empty_or_repeated", 0) == 45
    assert len(rows) == step.rows_out == counters["passage_qa.pairs"] == step.created + 15
    sources = {f"openstax:{p['id']}": p for p in read_jsonl(PASSAGES)}
    for row in rows:
        assert validate_row(row) == "conversational"
        user, assistant = row["messages"]
        assert (user["role"], assistant["role"]) == ("user", "assistant")
        assert not refers_to_source(user["content"]) and not refers_to_source(assistant["content"])
        meta = row["meta"]
        assert meta["prompt_id"] == "passage_qa.v1" and meta["generator_model"] == "fake-med"
        assert meta["phi_status"] == "not_applicable" and meta["licence"] == "CC-BY-NC-SA-4.0"
        source = sources[annotations(row)["generated_from"]]
        assert assistant["content"] in source["text"]  # the fake answers with passage sentences
    assert len({r["id"] for r in rows}) == len(rows)
    # the broken passage is in quarantine with the reason and (non-PHI row) the raw answer
    (q,) = read_jsonl(result.out_dir / "quarantine.jsonl")
    assert q["step"] == "passage_qa" and q["where"].endswith("openstax_passages.jsonl:line 1")
    assert "invalid JSON output after one repair retry" in q["error"] and "Here is the JSON you asked for" in q["error"]
    # token usage and cost land in stats.json
    stats = json.loads(result.stats_path.read_text())
    assert stats["steps"][-1]["counters"] == counters
    log = server.chat_log()
    assert counters["llm.requests"] == 16 and counters["llm.errors"] == 1 and counters["llm.invalid_output"] == 1
    assert counters["llm.prompt_tokens"] == sum(len("\n".join(m["content"] for m in e["body"]["messages"]).split())
                                                for e in log)
    assert counters["llm.cost"] == pytest.approx(
        counters["llm.prompt_tokens"] / 1000 + counters["llm.completion_tokens"] / 1000 * 2, abs=1e-5)
    # every request asked for structured output through the real client
    assert all(e["body"]["response_format"]["type"] == "json_schema" for e in log)


def test_a_second_build_is_answered_from_the_cache(server, tmp_path, build):
    data = recipe("qa", [passages_input()], [{"passage_qa": {"llm": "local", "per_passage": 2}}], llms(server, tmp_path))
    build(data, out=tmp_path / "one")
    sent = len(server.chat_log())
    second = build(data, out=tmp_path / "two")
    assert len(server.chat_log()) == sent == 16
    counters = second.steps[-1].counters
    assert counters["llm.cached"] == 16 and "llm.prompt_tokens" not in counters


@needs_exam
def test_mcq_rationale_keeps_items_the_model_gets_right(server, tmp_path, build):
    exam = {"builder": "exam", "path": str(MCQ), "format": "medmcqa", "licence": "MIT"}
    result = build(recipe("mcq", [exam, passages_input()], [{"mcq_rationale": {"llm": "local"}}],
                          llms(server, tmp_path)))
    step = result.steps[-1]
    kept = [r for r in output_rows(result) if r.get("question")]
    dropped = read_jsonl(next((result.out_dir / "dropped").glob("*mcq_rationale.jsonl")))
    assert len(kept) + len(dropped) == 20 and kept and dropped
    assert step.dropped == {"model_disagrees_with_key": len(dropped)}
    assert step.counters["mcq_rationale.other_rows"] == 16  # the passages passed through untouched
    # the fake picks its answer from the schema's enum; the log says which, per question
    picks = {}
    for e in server.chat_log():
        prompt = e["body"]["messages"][-1]["content"]
        picks[prompt.split("\n\n")[0]] = e["picks"]["answer"]
        assert "Answer:" not in prompt  # the key is never shown to the model
    for row in kept:
        assert picks[row["question"].strip()] == row["answer"]
        user, assistant = row["messages"]
        assert user["content"].startswith(row["question"].strip()) and "\nA. " in user["content"]
        text = next(o["text"] for o in row["options"] if o["label"] == row["answer"])
        assert assistant["content"].endswith(f"Answer: {row['answer']}. {text}")
        assert row["meta"]["prompt_id"] == "mcq_rationale.v1"
        assert annotations(row)["mcq_rationale.model_answer"] == row["answer"]
    for row in dropped:
        assert row["reason"] == "model_disagrees_with_key"
        assert picks[row["question"].strip()] != row["answer"]
        assert annotations(row)["mcq_rationale.model_answer"] != row["answer"]


def test_template_override_from_the_recipe(server, tmp_path, build):
    template = tmp_path / "my_qa.jinja"
    template.write_text(
        "{# prompt_id: cardio_qa #}\n{% block system %}You write cardiology flashcards as JSON.{% endblock %}\n"
        "{% block user %}Make {{ n }} cards.\n\n{{ passage }}{% endblock %}\n")
    step = {"passage_qa": {"llm": "local", "template": str(template), "per_passage": 1}}
    result = build(recipe("qa", [passages_input()], [step], llms(server, tmp_path)), limit=2)
    rows = output_rows(result)
    assert len(rows) == 2
    assert {r["meta"]["prompt_id"] for r in rows} == {f"cardio_qa@{__import__('hashlib').sha256(template.read_bytes()).hexdigest()[:8]}"}
    system = server.chat_log()[0]["body"]["messages"][0]
    assert system == {"role": "system", "content": "You write cardiology flashcards as JSON."}


@pytest.mark.parametrize("text,error", [
    ("{% block user %}{{ passage }{% endblock %}", r"my\.jinja:1: not a valid Jinja template"),
    ("{% block system %}hi{% endblock %}", r"needs a '\{% block user %\}'"),
])
def test_broken_templates_fail_when_the_recipe_loads(tmp_path, build, text, error):
    (tmp_path / "my.jinja").write_text(text)
    with pytest.raises(RecipeError, match=error):
        build(recipe("qa", [passages_input()], [{"passage_qa": {"llm": "local", "template": str(tmp_path / "my.jinja")}}],
                     {"local": {"model": "m"}}))


def test_raw_phi_rows_on_a_local_llm_keep_raw_output_out_of_quarantine_and_cache(server, tmp_path, build):
    server.add_fault("bad_content", count=None)
    notes = {"builder": "table", "path": str(NOTES), "phi_status": "raw",
             "columns": {"id": "doc_id", "text": "text", "patient_id": "patient_id"}}
    result = build(recipe("notes", [notes], [{"passage_qa": {"llm": "local", "min_chars": 20}}], llms(server, tmp_path)))
    entries = read_jsonl(result.out_dir / "quarantine.jsonl")
    assert len(entries) == 6
    for e in entries:
        assert "raw output withheld (the source row holds raw PHI)" in e["error"]
        assert "Here is the JSON" not in e["error"]
    assert not (tmp_path / "cache.sqlite").exists() or _cache_rows(tmp_path / "cache.sqlite") == 0


def _cache_rows(path: Path) -> int:
    import sqlite3

    return sqlite3.connect(path).execute("SELECT COUNT(*) FROM responses").fetchone()[0]


def _row(**content) -> dict:
    meta = new_meta(builder="test", file="items.jsonl", locator="line 1")
    return new_row(source="t", meta=meta, **content)


def test_rows_a_generator_cannot_use_are_accounted_for(tmp_path):
    ctx = StepContext(step_dir=tmp_path, llm_configs={"local": {"model": "m", "base_url": "http://127.0.0.1:9/v1"}})
    mcq = MCQRationale({"llm": "local"})
    opts = [{"label": "A", "text": "Iron"}, {"label": "B", "text": "Folate"}]
    rows = [
        _row(question="Which deficiency causes microcytic anemia?", options=opts[:1], answer="A"),  # one option
        _row(question="Which deficiency causes microcytic anemia?", options=opts, answer="E"),      # bad key
        _row(messages=messages(("user", "hi"), ("assistant", "hello"))),                             # not an exam item
    ]
    out = mcq.process_batch(rows, ctx)  # nothing reaches the LLM (the port is closed)
    assert isinstance(out[0], Drop) and out[0].reason == "no_options"
    assert isinstance(out[1], Quarantine) and "field 'answer' is not one of the option labels" in out[1].error
    assert out[2] is rows[2]
    qa = PassageQA({"llm": "local", "min_chars": 50, "max_chars": 200, "other_rows": "drop"})
    out = qa.process_batch([_row(text="Too short."), _row(text="x" * 300), _row(question="q?")], ctx)
    assert [o.reason for o in out] == ["too_short_for_qa", "passage_too_long", "other_row_type"]


def test_meta_references_are_removed_or_rejected():
    assert strip_reference("According to the passage, the heart has four chambers.") == \
        "The heart has four chambers."
    assert strip_reference("Based on the text the SA node sets the rhythm.") == "The SA node sets the rhythm."
    assert strip_reference("Aspirin inhibits COX-1.") == "Aspirin inhibits COX-1."
    assert refers_to_source("What does the passage say about insulin?")
    assert refers_to_source("As described in the text, insulin lowers glucose.")
    assert refers_to_source("Which enzyme is mentioned in the passage?")
    assert not refers_to_source("The text of a prescription must include the dose.")
    assert not refers_to_source("In the context of sepsis, lactate above 2 mmol/L signals hypoperfusion.")


@needs_exam
def test_example_recipe_runs_against_any_openai_compatible_server(server, tmp_path, monkeypatch):
    from meddata import pipeline
    from meddata import recipe as recipes

    monkeypatch.setenv("MEDDATA_LLM_BASE_URL", server.url)
    monkeypatch.setenv("MEDDATA_LLM_MODEL", "fake-med")
    monkeypatch.setenv("MEDDATA_CACHE_DIR", str(tmp_path / "cache"))
    path = EXAMPLES / "recipes" / "augment.yaml"
    result = pipeline.run(recipes.load(path), tmp_path / "out")
    assert (tmp_path / "cache" / "llm.sqlite").exists()
    assert [s.name for s in result.steps] == ["table", "exam", "passage_qa", "mcq_rationale"]
    qa, mcq = result.steps[-2:]
    assert qa.counters["llm.requests"] == 8 and mcq.counters["llm.requests"] == 12
    assert result.totals["out"] > 0 and result.totals["quarantined"] == 0
    assert {e["body"]["model"] for e in server.chat_log()} == {"fake-med"}


def test_changing_the_model_or_the_template_reruns_the_step(server, tmp_path, build):
    template = tmp_path / "t.jinja"
    template.write_text("{% block user %}Cards from: {{ passage }}{% endblock %}")
    step = {"passage_qa": {"llm": "local", "per_passage": 1, "template": str(template)}}
    out = tmp_path / "out"
    build(recipe("qa", [passages_input()], [step], llms(server, tmp_path)), out=out, limit=2)
    again = build(recipe("qa", [passages_input()], [step], llms(server, tmp_path)), out=out, limit=2)
    assert again.steps[-1].reused and len(server.chat_log()) == 2
    other_model = build(recipe("qa", [passages_input()], [step], llms(server, tmp_path, model="fake-med-2")),
                        out=out, limit=2)
    assert not other_model.steps[-1].reused and len(server.chat_log()) == 4
    template.write_text("{% block user %}Flashcards from: {{ passage }}{% endblock %}")
    edited = build(recipe("qa", [passages_input()], [step], llms(server, tmp_path, model="fake-med-2")),
                   out=out, limit=2)
    assert not edited.steps[-1].reused and len(server.chat_log()) == 6
