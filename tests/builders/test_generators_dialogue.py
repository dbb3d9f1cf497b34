"""passage_dialogue, kg_dialogue and rewrite_answer: real recipes, the real openai client, the
local OpenAI-protocol server (tests/kits/llm_server.py)."""

from __future__ import annotations

import json

import pytest
from generators_testkit import (
    CONSULTATIONS,
    PASSAGES,
    consultations_input,
    context,
    dropped,
    kg_input,
    llms,
    make_row,
    output_rows,
    passages_input,
    quarantine,
    recipe,
    server_fixture,
    step_stats,
)
from meddata.builders.generators.passage_qa import refers_to_source
from meddata.builders.generators.rewrite_answer import RewriteAnswer, references_in
from testutil import read_jsonl

from meddata.llm.conversation import dialogue_traits, refers_to_clinician
from meddata.records import annotations, messages, validate_row

server = server_fixture()


def _alternates(msgs: list[dict]) -> bool:
    roles = [m["role"] for m in msgs if m["role"] != "system"]
    return roles == ["user", "assistant"] * (len(roles) // 2) and len(roles) >= 2


# -- passage_dialogue --------------------------------------------------------------------------------
def test_passage_dialogue_turns_passages_into_dialogues(server, tmp_path, build):
    first = read_jsonl(PASSAGES)[0]["text"]
    server.add_fault("bad_content", count=None, match=first[:60])  # one passage: broken JSON, always
    step = {"passage_dialogue": {"llm": "local", "min_exchanges": 2, "max_exchanges": 4,
                                 "system_prompt": "You are a caring medical assistant."}}
    result = build(recipe("pd", [passages_input()], [step], llms(server.url, tmp_path)))
    st = step_stats(result, "passage_dialogue")
    rows = output_rows(result)
    assert st.rows_in == 4 and st.quarantined == 1 and len(rows) == 3 and st.dropped == {}
    passages = {f"openstax:{p['id']}": p["text"] for p in read_jsonl(PASSAGES)}
    for row in rows:
        assert validate_row(row) == "conversational"
        msgs = row["messages"]
        assert msgs[0] == {"role": "system", "content": "You are a caring medical assistant."}
        assert _alternates(msgs) and 2 <= (len(msgs) - 1) // 2 <= 4
        assert not any(refers_to_source(m["content"]) for m in msgs)
        assert annotations(row)["dialogue"] == dialogue_traits(msgs)
        assert row["meta"]["prompt_id"] == "passage_dialogue.v1" and row["meta"]["generator_model"] == "fake-med"
        source = passages[annotations(row)["generated_from"]]
        assert all(m["content"] in source for m in msgs[1:])  # the fake speaks with passage sentences
    (q,) = quarantine(result)
    assert q["step"] == "passage_dialogue" and "invalid JSON output after one repair retry" in q["error"]
    # the request asked for 2-4 alternating exchanges
    schema = server.chat_log()[-1]["body"]["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["dialogue"]["minItems"] == 2 and schema["properties"]["dialogue"]["maxItems"] == 4
    referrals = sum(annotations(r)["dialogue"]["refers_to_clinician"] for r in rows)
    assert st.counters.get("passage_dialogue.with_referral", 0) == referrals


def test_passage_dialogue_rules(server, tmp_path):
    from meddata.builders.generators.passage_dialogue import PassageDialogue

    ctx = context(tmp_path, server.url)
    passage = ("Asthma is a chronic disease of the airways. The airways narrow and swell and produce extra mucus. "
               "This makes breathing difficult and triggers coughing, wheezing and shortness of breath. ") * 2
    cites = "According to the passage, asthma narrows the airways and causes wheezing at night. " * 3
    step = PassageDialogue({"llm": "local", "require_referral": True, "min_chars": 100})
    step.ensure_setup(ctx)
    out = step.process_batch([make_row(text=passage), make_row(locator="line 2", text=cites),
                              make_row(locator="line 3", text="Too short.")], ctx)
    # the fake's dialogue repeats passage sentences: no clinician referral -> dropped when required
    assert [getattr(o, "reason", None) for o in out] == ["no_referral_to_clinician", "dialogue_refers_to_passage",
                                                         "too_short_for_dialogue"]
    assert refers_to_clinician("Please see your doctor if it gets worse.")
    assert refers_to_clinician("Call 911 now.") and not refers_to_clinician("Rest and drink fluids.")


# -- kg_dialogue ---------------------------------------------------------------------------------------
def test_kg_dialogue_builds_instructions_and_dialogues_that_keep_the_fact(server, tmp_path, build):
    result = build(recipe("kg", [kg_input()], [{"kg_dialogue": {"llm": "local"}}], llms(server.url, tmp_path)))
    st = step_stats(result, "kg_dialogue")
    rows = output_rows(result)
    groups = st.rows_in
    assert groups == 4  # (head, relation) groups of kg_facts.tsv
    kinds = [annotations(r)["kg_dialogue.kind"] for r in rows]
    rejected = sum(v for k, v in st.counters.items() if k.startswith("kg_dialogue.rejected."))
    assert len(rows) + rejected == 2 * groups  # each group: one instruction and one dialogue, kept or counted
    assert kinds.count("instruction") == st.counters.get("kg_dialogue.instruction", 0) > 0
    assert kinds.count("dialogue") == st.counters.get("kg_dialogue.dialogue", 0) > 0
    for row in rows:
        assert validate_row(row) == "conversational" and _alternates(row["messages"])
        ann = annotations(row)
        assert ann["head"] in {"Metformin", "Asthma", "Iron deficiency anemia"} and ann["relation"]
        text = " ".join(m["content"] for m in row["messages"]).casefold()
        assert ann["head"].casefold() in text
        assert row["meta"]["prompt_id"] == "kg_dialogue.v1" and row["meta"]["builder"] == "kg"
        if ann["kg_dialogue.kind"] == "instruction":
            assert len(row["messages"]) == 2
    # the prompt named the triple's head and relation
    prompts = [e["body"]["messages"][1]["content"] for e in server.chat_log()]
    assert any(p.startswith("Fact: Metformin | side effect") for p in prompts)
    for d in dropped(result, "kg_dialogue"):
        assert d["reason"] == "kg_fact_lost"


def test_kg_dialogue_rejects_rows_that_lose_the_entity(server, tmp_path):
    from meddata.builders.generators.kg_dialogue import KgDialogue

    ctx = context(tmp_path, server.url)
    row = make_row(messages=messages(("user", "What is this blood thinner used for?"),
                                     ("assistant", "It prevents blood clots in atrial fibrillation and after DVT.")))
    row["meta"]["annotations"] = json.dumps({"head": "Warfarin", "relation": "indication"})
    plain = make_row(locator="line 2", messages=messages(("user", "What is warfarin used for?"),
                                                         ("assistant", "Warfarin prevents blood clots.")))
    step = KgDialogue({"llm": "local", "emit": ["dialogue"]})
    step.ensure_setup(ctx)
    first, second = step.process_batch([row, plain], ctx)
    # the fake's dialogue repeats the QA pair, which never names warfarin: the fact is lost
    assert first.reason == "kg_fact_lost"
    assert step.take_stats()["kg_dialogue.rejected.lost_entity.dialogue"] == 1
    (new,) = second  # no head recorded: nothing to check the dialogue against
    assert annotations(new)["kg_dialogue.kind"] == "dialogue" and "head" not in annotations(new)


# -- rewrite_answer ------------------------------------------------------------------------------------
def test_rewrite_answer_rewrites_doctor_turns_and_keeps_patient_turns(server, tmp_path, build):
    result = build(recipe("rw", [consultations_input()], [{"rewrite_answer": {"llm": "local"}}],
                          llms(server.url, tmp_path)))
    st = step_stats(result, "rewrite_answer")
    rows, drops = output_rows(result), dropped(result, "rewrite_answer")
    assert st.rows_in == 6 and len(rows) + len(drops) == 6 and rows
    originals = json.loads(CONSULTATIONS.read_text())
    by_question = {o["input"]: o for o in originals}
    for row in rows:
        assert validate_row(row) == "conversational"
        user, doctor = row["messages"]
        source = by_question[user["content"]]  # the patient turn is untouched
        assert doctor["content"] != source["output"] and not references_in(doctor["content"])
        assert annotations(row)["rewrite_answer.removed"] == sorted(references_in(source["output"]))
        assert row["meta"]["prompt_id"] == "rewrite_answer.v1"
    removed = sum(len(annotations(r)["rewrite_answer.removed"]) for r in rows)
    assert removed == sum(v for k, v in st.counters.items() if k.startswith("rewrite_answer.removed.")) > 0
    # every request asked for exactly one doctor turn and showed the consultation
    for e in server.chat_log():
        assert e["body"]["response_format"]["json_schema"]["schema"]["properties"]["rewritten"]["maxItems"] == 1
        assert "\n\nPatient:\n" in e["body"]["messages"][1]["content"]


def test_rewrite_answer_multi_turn_and_kept_references(server, tmp_path):
    ctx = context(tmp_path, server.url)
    dialogue = make_row(messages=messages(
        ("system", "You are a doctor."),
        ("user", "I have had a dry cough for three weeks."), ("assistant", "Do you smoke or have a fever at night?"),
        ("user", "No fever, but I started lisinopril last month."),
        ("assistant", "Lisinopril often causes a dry cough. Ask your prescriber about switching to another drug.")))
    photo = make_row(locator="line 2", messages=messages(
        ("user", "What is this rash on my arm?"),
        ("assistant", "I have looked at the photo you uploaded and the rash looks fungal. Use clotrimazole cream.")))
    step = RewriteAnswer({"llm": "local"})
    step.ensure_setup(ctx)
    first, second = step.process_batch([dialogue, photo], ctx)
    assert [m["role"] for m in first["messages"]] == ["system", "user", "assistant", "user", "assistant"]
    for i in (0, 1, 3):  # system and patient turns unchanged
        assert first["messages"][i] == dialogue["messages"][i]
    schema = server.chat_log()[0]["body"]["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["rewritten"]["minItems"] == 2
    # the fake echoes the doctor's first sentence, which still mentions the uploaded photo
    assert second.reason == "rewrite_kept_references"
    assert step.take_stats()["rewrite_answer.kept.image"] == 1


@pytest.mark.parametrize("text,kinds", [
    ("I have seen the photo you attached.", ["image"]),
    ("Please come to St. Mary's Hospital for an MRI.", ["hospital"]),
    ("Book an appointment with me next week.", ["appointment"]),
    ("Visit www.example.com or ask a doctor online.", ["appointment", "link"]),
    ("An MRI of the knee can show a torn meniscus; see an orthopaedic surgeon.", []),
    ("The tendon is attached to the bone; rest and ice help.", []),
])
def test_reference_patterns(text, kinds):
    assert references_in(text) == kinds
