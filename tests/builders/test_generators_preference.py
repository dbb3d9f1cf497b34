"""preference_rank (k samples graded by the rubric judge) and preference_physician (physician
answer vs model answer): real recipes, the real openai client, the local server. The ranking
test uses tests/kits/llm_canned.py's SamplingServer, whose plain-text answers vary with the seed."""

from __future__ import annotations

import json

from generators_testkit import (
    CONSULTATIONS,
    consultations_input,
    context,
    dropped,
    llms,
    make_row,
    output_rows,
    quarantine,
    recipe,
    server_fixture,
    step_stats,
)
from llm_canned import SamplingServer
from meddata.builders.generators.preference import PreferencePhysician, prompt_of

from meddata.llm.rubric import CRITERIA
from meddata.records import annotations, messages, validate_row

server = server_fixture()
sampling_server = server_fixture(SamplingServer)


def _judge_means(log: list[dict]) -> dict[str, list[float]]:
    """Graded answer text -> the mean of the rubric scores the fake judge picked for it."""
    means: dict[str, list[float]] = {}
    for e in log:
        fmt = e["body"].get("response_format")
        if not fmt:
            continue
        graded = e["body"]["messages"][-1]["content"].rsplit("Assistant:\n", 1)[1].strip()
        means.setdefault(graded, []).append(sum(e["picks"][c] for c in CRITERIA) / len(CRITERIA))
    return means


def test_preference_rank_pairs_the_best_and_worst_of_k_samples(sampling_server, tmp_path, build):
    steps = [{"preference_rank": {"llm": "local", "k": 3, "min_margin": 0.5}}]
    result = build(recipe("rank", [consultations_input()], steps, llms(sampling_server.url, tmp_path)))
    st = step_stats(result, "preference_rank")
    rows, drops = output_rows(result), dropped(result, "preference_rank")
    assert st.rows_in == 6 and len(rows) + len(drops) == 6 and rows and not quarantine(result)
    c = st.counters
    assert c["llm.requests"] == 18 and c["judge.llm.requests"] == 18
    log = sampling_server.chat_log()
    samples = [e for e in log if not e["body"].get("response_format")]
    assert sorted({e["body"]["seed"] for e in samples}) == [0, 1, 2]
    assert all(e["body"]["temperature"] == 0.8 for e in samples)
    means = _judge_means(log)
    questions = {o["input"] for o in json.loads(CONSULTATIONS.read_text())}
    for row in rows:
        assert validate_row(row) == "preference"
        assert [m["role"] for m in row["prompt"]] == ["user"] and row["prompt"][0]["content"] in questions
        chosen, rejected = row["chosen"][0]["content"], row["rejected"][0]["content"]
        info = annotations(row)["preference"]
        assert means[chosen] == [max(info["means"])] and means[rejected] == [min(info["means"])]
        assert info["margin"] >= 0.5 and info["judge_prompt_id"] == "judge.v1" and info["candidates"] == 3
        assert row["meta"]["prompt_id"] == "respond.v1" and row["meta"]["generator_model"] == "fake-med"
    for d in drops:
        assert d["reason"] == "no_preference_margin"
        assert annotations(d)["preference"]["margin"] < 0.5
    # the judge saw one candidate per request, never two (no order to be biased by)
    for e in log:
        if e["body"].get("response_format"):
            assert e["body"]["messages"][-1]["content"].count("Assistant:\n") == 1


def test_preference_rank_drops_prompts_whose_samples_are_identical(server, tmp_path):
    # the shared fake answers plain text by the messages alone, so k samples are identical
    from meddata.builders.generators.preference import PreferenceRank

    ctx = context(tmp_path, server.url)
    step = PreferenceRank({"llm": "local", "k": 2})
    step.ensure_setup(ctx)
    row = make_row(messages=messages(("user", "Is it safe to run with a mild cold?"), ("assistant", "Usually.")))
    (out,) = step.process_batch([row], ctx)
    assert out.reason == "identical_samples"


def test_preference_rank_quarantines_a_row_whose_judgment_failed(sampling_server, tmp_path):
    from meddata.builders.generators.preference import PreferenceRank

    ctx = context(tmp_path, sampling_server.url)
    step = PreferenceRank({"llm": "local", "k": 2})
    step.ensure_setup(ctx)
    row = make_row(messages=messages(("user", "How long does a cold usually last in adults?"), ("assistant", "A week.")))
    sampling_server.add_fault("bad_content", count=None, match="Conversation to grade")
    (out,) = step.process_batch([row], ctx)
    assert "judge: invalid JSON output after one repair retry" in out.error


def test_preference_physician_pairs_the_doctor_against_the_model(server, tmp_path, build):
    result = build(recipe("phys", [consultations_input()], [{"preference_physician": {"llm": "local"}}],
                          llms(server.url, tmp_path)))
    st = step_stats(result, "preference_physician")
    rows = output_rows(result)
    originals = {o["input"]: o["output"] for o in json.loads(CONSULTATIONS.read_text())}
    assert st.rows_in == 6 and len(rows) == st.counters["preference_physician.pairs"] == 6
    for row in rows:
        assert validate_row(row) == "preference"
        (question,) = row["prompt"]
        assert row["chosen"] == [{"role": "assistant", "content": originals[question["content"]]}]
        assert row["rejected"][0]["content"].startswith("In short: ")  # the fake model's answer
        assert row["meta"]["prompt_id"] == "respond.v1"
    # the model was asked with the respond template's system prompt and the question
    for e in server.chat_log():
        system, user = e["body"]["messages"]
        assert system["role"] == "system" and "medical assistant" in system["content"]
        assert user["content"] in originals


def test_preference_physician_drops_model_answers_that_copy_the_physician(server, tmp_path):
    ctx = context(tmp_path, server.url)
    step = PreferencePhysician({"llm": "local"})
    step.ensure_setup(ctx)
    question = "Why do my ankles swell on long flights?"
    same = make_row(messages=messages(("user", question), ("assistant", f"In short: {question}")))
    multi = make_row(locator="line 2", messages=messages(
        ("system", "You are a cardiologist."), ("user", "My ankles swell."), ("assistant", "Since when?"),
        ("user", "Since I started amlodipine."), ("assistant", "Amlodipine commonly causes ankle swelling.")))
    first, second = step.process_batch([same, multi], ctx)
    assert first.reason == "model_answer_matches_physician"
    assert [m["role"] for m in second["prompt"]] == ["system", "user", "assistant", "user"]
    assert second["chosen"][0]["content"] == "Amlodipine commonly causes ankle swelling."
    sent = server.chat_log()[-1]["body"]["messages"]
    assert sent[0] == {"role": "system", "content": "You are a cardiologist."}  # the row's own system prompt wins
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert prompt_of(make_row(text="just text")) is None
