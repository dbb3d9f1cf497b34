"""self_instruct (with the seed_tasks builder), evol_instruct and translate: real recipes, the
real openai client, the local OpenAI-protocol server (tests/kits/llm_server.py)."""

from __future__ import annotations

import pytest
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
from meddata.builders.generators.evol_instruct import EvolInstruct, elimination_reason
from meddata.builders.generators.novelty import NoveltyPool
from meddata.builders.generators.self_instruct import SEED_FILE, load_seed_tasks
from meddata.builders.generators.translate import lost_in_translation, numbers, units
from testutil import write_jsonl

from meddata.records import annotations, messages, validate_row

server = server_fixture()


def _rouge_l(a: str, b: str) -> float:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"]).score(a, b)["rougeL"].fmeasure


# -- seeds and novelty ---------------------------------------------------------------------------
def test_shipped_seed_tasks_are_varied_and_complete():
    tasks = load_seed_tasks()
    assert len(tasks) >= 30 and len(tasks) == len(SEED_FILE.read_text().splitlines())
    assert {t["view"] for t in tasks} >= {"patient", "caregiver", "student", "clinician", "researcher"}
    assert len({t["topic"] for t in tasks}) >= 15 and len({t["type"] for t in tasks}) >= 15
    # the seeds are themselves novel against each other
    pool = NoveltyPool(0.7)
    assert all(pool.add_if_novel(t["instruction"])[0] for t in tasks)


def test_novelty_pool_scores_like_rouge_score():
    texts = ["Explain what HbA1c measures to a newly diagnosed patient.",
             "Explain what HbA1c measures to a patient who is newly diagnosed.",
             "Calculate the BMI of a man weighing 92 kg.", "List red flags of low back pain."]
    pool = NoveltyPool(1.0)  # never stops early
    pool.add(texts[0])
    for t in texts[1:]:
        assert pool.most_similar(t) == pytest.approx(_rouge_l(texts[0], t))
    assert _rouge_l(texts[0], texts[1]) >= 0.7 > _rouge_l(texts[0], texts[2])
    strict = NoveltyPool(0.7)
    strict.add(texts[0])
    assert strict.add_if_novel(texts[1])[0] is False and len(strict) == 1
    assert strict.add_if_novel(texts[2]) == (True, pytest.approx(_rouge_l(texts[0], texts[2])))
    assert len(strict) == 2 and strict.add_if_novel(texts[2])[0] is False  # it joined the pool


def test_seed_tasks_builder_quarantines_malformed_lines(tmp_path, build):
    good = {"instruction": "Explain what a normal resting heart rate is.", "input": "", "output": "60 to 100 bpm."}
    path = write_jsonl(tmp_path / "seeds.jsonl", [good, {"instruction": "No output here."}, {**good, "input": 3}])
    with path.open("a") as fh:
        fh.write("{not json\n")
    result = build(recipe("seeds", [{"builder": "seed_tasks", "path": str(path)}], [], {}))
    rows = output_rows(result)
    assert len(rows) == 1 and rows[0]["messages"][0]["content"] == good["instruction"]
    errors = sorted((q["locator"], q["error"]) for q in quarantine(result))
    assert all(q["file"].endswith("seeds.jsonl") for q in quarantine(result))
    assert [e[0] for e in errors] == ["line 2", "line 3", "line 4"]
    assert "field 'output'" in errors[0][1] and "field 'input'" in errors[1][1] and "invalid JSON" in errors[2][1]


# -- self_instruct ---------------------------------------------------------------------------------
def test_self_instruct_keeps_only_novel_tasks(server, tmp_path, build):
    steps = [{"self_instruct": {"llm": "local", "requests_per_row": 2, "tasks_per_request": 3}}]
    result = build(recipe("si", [{"builder": "seed_tasks"}], steps, llms(server.url, tmp_path)), limit=6)
    st = step_stats(result, "self_instruct")
    rows = output_rows(result)
    c = st.counters
    assert c["llm.requests"] == 12
    # 6 rows x 2 requests x 3 tasks: every task is either kept or rejected, with its reason
    rejected = sum(v for k, v in c.items() if k.startswith("self_instruct.rejected."))
    assert c["self_instruct.tasks"] + rejected == 36 and rejected > 0 and rows
    assert len(rows) == c["self_instruct.tasks"] == st.rows_out
    assert st.rows_in == 6 == st.rows_out - st.created + sum(st.dropped.values())
    # the novelty invariant, checked with rouge-score itself: every kept instruction differs
    # (ROUGE-L < 0.7) from every seed and from every instruction kept before it
    seeds = [t["instruction"] for t in load_seed_tasks()]
    kept = [r["messages"][0]["content"].split("\n\n")[0] for r in rows]  # in the order they were kept
    for i, instruction in enumerate(kept):
        for other in seeds + kept[:i]:
            assert _rouge_l(other, instruction) < 0.7
    for row in rows:
        assert validate_row(row) == "conversational"
        meta = row["meta"]
        assert meta["prompt_id"] == "self_instruct.v1" and meta["generator_model"] == "fake-med"
        assert meta["builder"] == "seed_tasks" and annotations(row)["generated_from"]
    # the demonstrations differ between the two requests of one seed
    bodies = [e["body"]["messages"][1]["content"] for e in server.chat_log()]
    assert len(set(bodies)) == 12
    assert all(d["reason"] == "no_novel_instructions" for d in dropped(result, "self_instruct"))


# -- evol_instruct ---------------------------------------------------------------------------------
def test_evol_instruct_evolves_with_each_method(server, tmp_path, build):
    steps = [{"evol_instruct": {"llm": "local", "per_row": 2}}]
    result = build(recipe("evol", [consultations_input()], steps, llms(server.url, tmp_path)))
    st = step_stats(result, "evol_instruct")
    rows = output_rows(result)
    originals = [r for r in rows if not r["meta"]["prompt_id"]]
    evolved = [r for r in rows if r["meta"]["prompt_id"] == "evol_instruct.v1"]
    assert len(originals) == 6 and st.counters["llm.requests"] == 12  # keep_source: originals stay
    rejected = sum(v for k, v in st.counters.items() if k.startswith("evol_instruct.rejected."))
    assert len(evolved) + rejected == 12 and evolved
    methods = [annotations(r)["evol_instruct.method"] for r in evolved]
    assert set(methods) <= {"deepen", "constraints", "concretize"} and len(set(methods)) >= 2
    by_id = {r["id"]: r for r in originals}
    for row in evolved:
        assert validate_row(row) == "conversational"
        source = by_id[annotations(row)["generated_from"]]
        assert row["messages"][0]["content"] != source["messages"][0]["content"]
    # each request named its method in the system prompt; a row's two requests used two methods
    systems = [e["body"]["messages"][0]["content"] for e in server.chat_log()]
    assert sum("DEEPEN" in s for s in systems) + sum("ADD CONSTRAINTS" in s for s in systems) + \
        sum("CONCRETIZE" in s for s in systems) == 12


def test_evol_instruct_elimination_rules():
    original = "What are the symptoms of iron deficiency anaemia?"
    assert elimination_reason(original, original, "Fatigue and pallor.", 0.9) == "no_change"
    assert elimination_reason(original, "#Rewritten Prompt#: list symptoms in a pregnant woman", "x y", 0.9) == \
        "leaked_prompt_words"
    assert elimination_reason(original, "Given prompt aside, what symptoms occur in children?", "ok", 0.9) == \
        "leaked_prompt_words"
    assert elimination_reason(original, "In a 30-year-old pregnant woman with Hb 9 g/dL, which symptoms "
                              "suggest iron deficiency?", "Sorry, I can't help with that.", 0.9) == "refusal"
    assert elimination_reason(original, "In a 30-year-old pregnant woman with Hb 9 g/dL, which symptoms "
                              "suggest iron deficiency?", "...", 0.9) == "empty"
    assert elimination_reason(original, "In a 30-year-old pregnant woman with Hb 9 g/dL, which symptoms "
                              "suggest iron deficiency?", "Fatigue, breathlessness and pallor.", 0.9) is None


def test_evol_instruct_without_source_drops_rows_with_no_usable_evolution(server, tmp_path):
    # the fake's instruction ends with the prompt's last words: "... the original instruction?" is a leak
    row = make_row(messages=messages(("user", "Explain how to read a label with the original instruction."),
                                     ("assistant", "It tells you how to take the medicine.")))
    step = EvolInstruct({"llm": "local", "keep_source": False})
    ctx = context(tmp_path, server.url)
    step.ensure_setup(ctx)
    (out,) = step.process_batch([row], ctx)
    assert out.reason == "no_usable_evolution" and step.take_stats()["evol_instruct.rejected.leaked_prompt_words"] == 1


# -- translate ---------------------------------------------------------------------------------------
def test_number_unit_and_acronym_checks_on_real_translations():
    en = "Give paracetamol 15 mg/kg every 6 hours (max 4 doses in 24 h). Fever above 38.5 °C or HbA1c over 7% needs an ECG."
    es = ("Administre paracetamol 15 mg/kg cada 6 horas (máximo 4 dosis en 24 h). Una fiebre superior a 38,5 °C "
          "o una HbA1c superior al 7 % requiere un ECG.")
    de = ("Geben Sie Paracetamol 15 mg/kg alle 6 Stunden (höchstens 4 Dosen in 24 h). Fieber über 38,5 °C oder "
          "HbA1c über 7 % erfordert ein EKG.")
    assert lost_in_translation(en, es) == {}
    assert lost_in_translation(en, de) == {"acronyms": 1}  # ECG became EKG
    assert lost_in_translation(en, de, check_acronyms=False) == {}
    dropped_dose = es.replace("15 mg/kg", "la dosis habitual")
    assert lost_in_translation(en, dropped_dose) == {"numbers": 1, "units": 1}
    assert lost_in_translation(en, es.replace("mg/kg", "g/kg")) == {"units": 1}
    assert lost_in_translation(en, es.replace("cada 6 horas", "cada seis horas")) == {"numbers": 1}
    assert numbers("1,000.5 and 1.000,5") == numbers("10005 10005")
    assert units("101 F, 38 °C, 5 ml, 30 kg/m²") == units("101 °F, 38 degC, 5 mL, 30 kg/m2")


def test_translate_keeps_rows_whose_numbers_survive_and_quarantines_the_others(server, tmp_path, build):
    steps = [{"translate": {"llm": "local", "language": "Spanish", "language_code": "es", "keep_source": True}}]
    result = build(recipe("tr", [consultations_input()], steps, llms(server.url, tmp_path)))
    st = step_stats(result, "translate")
    rows = output_rows(result)
    originals = {r["id"]: r for r in rows if r["meta"]["prompt_id"] is None}
    translated = [r for r in rows if r["meta"]["prompt_id"] == "translate.v1"]
    failed = [r for r in originals.values() if "translate.error" in annotations(r)]
    assert len(originals) == 6 and translated and failed and len(translated) + len(failed) == 6
    assert st.counters["translate.rows"] == len(translated) and st.quarantined == 0
    for row in translated:
        assert validate_row(row) == "conversational" and annotations(row)["translate.language"] == "es"
        source = originals[annotations(row)["generated_from"]]
        for before, after in zip(source["messages"], row["messages"]):
            assert before["role"] == after["role"]
            assert not numbers(before["content"]) - numbers(after["content"])
            assert not units(before["content"]) - units(after["content"])
    for row in failed:  # something checkable was there to lose
        text = " ".join(m["content"] for m in row["messages"])
        assert numbers(text) or units(text) or lost_in_translation(text, "")
        assert annotations(row)["translate.error"].startswith("translation changed the source: turn ")
    # one translation asked for per turn
    for e in server.chat_log():
        items = e["body"]["response_format"]["json_schema"]["schema"]["properties"]["translations"]
        assert items["minItems"] == items["maxItems"] == 2

    # by default a translation replaces its row, and a failed one is quarantined with the reason
    steps = [{"translate": {"llm": "local", "language": "Spanish"}}]
    again = build(recipe("tr", [consultations_input()], steps, llms(server.url, tmp_path)), out=tmp_path / "replace")
    assert len(output_rows(again)) == len(translated)
    entries = quarantine(again)
    assert len(entries) == len(failed) == step_stats(again, "translate").quarantined
    errors = sorted(e["error"].split("; raw output")[0].removeprefix("translate: unusable LLM answer: ")
                    for e in entries)
    assert errors == sorted(annotations(r)["translate.error"] for r in failed)
    assert all(e["where"].startswith(str(CONSULTATIONS.name)) or "consultations.json" in e["where"] for e in entries)


def test_translate_keeps_the_row_type_and_skips_rows_outside_its_sources(server, tmp_path):
    from meddata.builders.generators.translate import Translate

    ctx = context(tmp_path, server.url)
    step = Translate({"llm": "local", "language": "German", "sources": ["t"]})
    step.ensure_setup(ctx)
    pc = make_row(prompt=[{"role": "user", "content": "Why do we yawn when we are tired?"}],
                  completion=[{"role": "assistant", "content": "Nobody knows for sure. It may help cool the brain."}])
    other = make_row(locator="line 2", messages=messages(("user", "Hi"), ("assistant", "Hello")))
    other["source"] = "elsewhere"
    first, second = step.process_batch([pc, other], ctx)
    assert validate_row(first) == "prompt_completion" and first["id"] != pc["id"]
    assert [m["role"] for m in first["prompt"] + first["completion"]] == ["user", "assistant"]
    assert second is other and step.take_stats()["translate.other_rows"] == 1
    (e,) = server.chat_log()
    assert "into German" in e["body"]["messages"][0]["content"]
