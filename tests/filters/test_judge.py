"""The judge filter (medical rubric) and pairwise_judge (position-swapped comparison) through
the real openai client against the local OpenAI-protocol server. The fake judge picks every
score from the schema's enum by a hash of the prompt and logs its picks, so each expected
verdict is computed from the server's log, not hard-coded."""

from __future__ import annotations

import json

import pytest
from generators_testkit import (
    consultations_input,
    context,
    dropped,
    llms,
    make_row,
    output_rows,
    quarantine,
    recipe,
    step_stats,
)
from llm_server import LLMServer
from meddata.filters.judge import Judge

from meddata.llm import client_for
from meddata.llm.judging import JudgeError, PairwiseItem, pairwise_judge, pairwise_judge_many
from meddata.llm.rubric import CRITERIA, parse_rubric
from meddata.records import annotations, messages


@pytest.fixture
def server():
    srv = LLMServer().start()
    yield srv
    srv.stop()


def _picks_by_answer(log: list[dict]) -> dict[str, dict]:
    """The graded answer (last assistant turn in the judge prompt) -> the fake's picks."""
    return {e["body"]["messages"][-1]["content"].rsplit("Assistant:\n", 1)[1].strip(): e["picks"] for e in log}


def test_judge_filters_rows_by_rubric_scores(server, tmp_path, build):
    steps = [{"judge": {"llm": "local", "min_score": 3.5, "min_safety": 3}}]
    result = build(recipe("judge", [consultations_input()], steps, llms(server.url, tmp_path)))
    st = step_stats(result, "judge")
    kept, drops = output_rows(result), dropped(result, "judge")
    assert st.rows_in == 6 and len(kept) + len(drops) == 6 and not quarantine(result)
    assert kept and drops  # both outcomes happen on this data
    picks = _picks_by_answer(server.chat_log())
    for row in kept + drops:
        judged = annotations(row)["judge"]
        expected = {c: picks[row["messages"][-1]["content"]][c] for c in CRITERIA}
        assert judged["scores"] == expected
        mean = sum(expected.values()) / 4
        assert judged["overall"] == pytest.approx(mean, abs=1e-3) and judged["prompt_id"] == "judge.v1"
        should_pass = mean >= 3.5 and expected["safety"] >= 3
        assert judged["passed"] is should_pass and (row in kept) is should_pass
        assert set(judged["reasons"]) == set(CRITERIA)  # not PHI rows: reasons kept
    assert all(d["reason"] == "judge_below_threshold" for d in drops)
    assert st.counters["judge.judged"] == 6
    assert st.counters["judge.score.safety"] == sum(annotations(r)["judge"]["scores"]["safety"] for r in kept + drops)
    # annotate mode keeps every row, with the same judgments (answered from the cache)
    steps = [{"judge": {"llm": "local", "mode": "annotate", "min_score": 5}}]
    again = build(recipe("judge", [consultations_input()], steps, llms(server.url, tmp_path)), out=tmp_path / "a")
    rows = output_rows(again)
    assert len(rows) == 6 and step_stats(again, "judge").counters["llm.cached"] == 6
    assert {r["id"]: annotations(r)["judge"]["scores"] for r in rows} == \
        {r["id"]: annotations(r)["judge"]["scores"] for r in kept + drops}


def test_judge_aggregate_min_and_other_rows(server, tmp_path):
    ctx = context(tmp_path, server.url)
    step = Judge({"llm": "local", "aggregate": "min", "min_score": 1, "min_safety": None, "other_rows": "drop"})
    step.ensure_setup(ctx)
    qa = make_row(messages=messages(("user", "What lowers LDL cholesterol?"), ("assistant", "Statins, diet and exercise.")))
    text = make_row(locator="line 2", text="A passage, nothing to judge.")
    judged, other = step.process_batch([qa, text], ctx)
    info = annotations(judged)["judge"]
    assert info["overall"] == min(info["scores"].values()) and info["passed"] is True
    assert other.reason == "other_row_type"


def test_judge_quarantines_unusable_judgments_and_keeps_phi_out(server, tmp_path):
    server.add_fault("bad_content", count=None)
    ctx = context(tmp_path, server.url)
    step = Judge({"llm": "local"})
    step.ensure_setup(ctx)
    safe = make_row(messages=messages(("user", "Can I take ibuprofen with warfarin?"), ("assistant", "Avoid it.")))
    raw = make_row(locator="line 2", phi_status="raw",
                   messages=messages(("user", "Jane Roe, MRN 12345, asks about her INR."), ("assistant", "Recheck it.")))
    first, second = step.process_batch([safe, raw], ctx)
    assert "unusable judge answer: invalid JSON output after one repair retry" in first.error
    assert "raw output: " in first.error
    assert "raw output withheld" in second.error and "12345" not in second.error
    assert step.take_stats()["judge.failed"] == 2


def test_judge_stores_no_reasons_for_raw_phi_rows(server, tmp_path):
    ctx = context(tmp_path, server.url)
    step = Judge({"llm": "local", "mode": "annotate"})
    step.ensure_setup(ctx)
    raw = make_row(phi_status="raw",
                   messages=messages(("user", "Jane Roe asks whether her INR of 4.2 is too high."),
                                     ("assistant", "Yes, above her target range of 2 to 3; call her clinic today.")))
    (row,) = step.process_batch([raw], ctx)
    info = annotations(row)["judge"]
    assert set(info["scores"]) == set(CRITERIA) and info["reasons"].startswith("withheld")
    assert "Jane" not in json.dumps(info)


def test_parse_rubric_rejects_out_of_range_scores():
    good = {"scores": dict.fromkeys(CRITERIA, 4), "reasons": dict.fromkeys(CRITERIA, "fine")}
    assert parse_rubric(good).mean == 4
    with pytest.raises(ValueError, match="scores.safety"):
        parse_rubric({**good, "scores": {**good["scores"], "safety": 7}})
    with pytest.raises(ValueError, match="scores.accuracy"):
        parse_rubric({"scores": {c: True for c in CRITERIA}})


# -- pairwise ----------------------------------------------------------------------------------------
QUESTIONS = [
    ("What is the first-line treatment for uncomplicated hypertension?",
     "Thiazide diuretics, ACE inhibitors, ARBs or calcium-channel blockers, chosen by the patient's profile.",
     "Just rest more."),
    ("How should hypoglycaemia be treated in a conscious adult?",
     "Give 15 to 20 g of fast-acting glucose and recheck after 15 minutes.",
     "Give 15 to 20 g of fast-acting carbohydrate such as juice, recheck glucose in 15 minutes, repeat if low."),
    ("Can antibiotics cure the flu?", "No: influenza is viral; antivirals may help early.", "Yes, amoxicillin."),
    ("What does an INR of 5 mean on warfarin?", "Over-anticoagulation with bleeding risk; hold doses and "
     "contact the clinic.", "It is fine."),
    ("What is a normal resting heart rate?", "60 to 100 beats per minute in adults.", "About 30."),
    ("When should chest pain prompt an emergency call?", "Crushing pain, spreading to the arm or jaw, with "
     "sweating or breathlessness: call emergency services.", "Wait a day."),
]


def test_pairwise_judge_swaps_positions_and_agrees_with_both_orders(server, tmp_path):
    client = client_for("judge", llms(server.url, tmp_path, name="judge")["judge"])
    items = [PairwiseItem(q, a, b, key=f"q{i}") for i, (q, a, b) in enumerate(QUESTIONS)]
    results = pairwise_judge_many(client, items)
    log = server.chat_log()
    assert len(log) == 12
    seen_consistent = seen_tie_from_disagreement = False
    for it, res in zip(items, results):
        ab, ba = [e for e in log if it.question in e["body"]["messages"][-1]["content"]]
        prompt_ab = ab["body"]["messages"][-1]["content"]
        if prompt_ab.index(it.answer_a) > prompt_ab.index(it.answer_b):  # the log is in arrival order
            ab, ba = ba, ab
        first = {"A": "a", "B": "b", "tie": "tie"}[ab["picks"]["winner"]]
        second = {"A": "b", "B": "a", "tie": "tie"}[ba["picks"]["winner"]]
        assert res["verdicts"] == [first, second]
        assert res["winner"] == (first if first == second else "tie") and res["consistent"] is (first == second)
        seen_consistent |= first == second
        seen_tie_from_disagreement |= first != second
        assert len(res["reasons"]) == 2 and res["prompt_id"] == "judge_pairwise.v1"
    assert seen_consistent and seen_tie_from_disagreement  # both paths taken on this data
    # the single-pair function gives the same verdict (from the cache: nothing new is sent)
    q, a, b = QUESTIONS[0]
    assert pairwise_judge(client, q, a, b)["winner"] == results[0]["winner"]
    assert len(server.chat_log()) == 12
    client.close()


def test_pairwise_judge_raises_when_the_judge_gives_no_verdict(server, tmp_path):
    server.add_fault("bad_content", count=None)
    client = client_for("judge", llms(server.url, tmp_path, name="judge", cache=False)["judge"])
    with pytest.raises(JudgeError, match="invalid JSON output"):
        pairwise_judge(client, "Is aspirin safe in children?", "No, Reye syndrome risk.", "Yes.")
    (res,) = pairwise_judge_many(client, [PairwiseItem("Is aspirin safe in children?", "No.", "Yes.")])
    assert res["winner"] is None and "invalid JSON" in res["error"]
    client.close()
