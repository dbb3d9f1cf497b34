"""Template task makers on real notes (MTSamples), dialogues (MTS-Dialog), exam items and the
OpenStax glossary: outputs, drops with reasons, source selection, the example recipe."""

from __future__ import annotations

import csv
import json
import re

import pytest
import yaml
from meddata.builders.sections import find_section, split_sections, unflatten_mtsamples
from meddata.builders.tasks import DialogueNote, SectionSummary, readable_title
from testutil import DATA, EXAMPLES, read_jsonl

from meddata.exams import instruction_turns, load_exam
from meddata.recipe import RecipeError
from meddata.records import messages, new_meta, new_row, validate_row
from meddata.steps import Drop, StepContext

TASKS = DATA / "tasks"
HPI = ("history of present illness",)
TARGETS = ("assessment and plan", "assessment", "impression")


def _rows(result) -> list[dict]:
    path = result.out_dir / "jsonl" / "train.jsonl"
    return read_jsonl(path) if path.exists() else []


def _turns(row: dict) -> tuple[str, str]:
    return row["messages"][-2]["content"], row["messages"][-1]["content"]


def test_section_summary_on_mtsamples(build):
    result = build({"name": "notes", "inputs": [{"builder": "mtsamples", "path": str(TASKS / "mtsamples_sample.jsonl")}],
                    "steps": ["section_summary"]})
    st = result.steps[1]
    rows = _rows(result)
    notes = [json.loads(line) for line in (TASKS / "mtsamples_sample.jsonl").open()]
    expected = []
    for note in notes:
        sections = split_sections(unflatten_mtsamples(note["transcription"]))
        source, target = find_section(sections, *HPI), find_section(sections, *TARGETS)
        if source and target:
            expected.append((source["text"].strip(), target["text"].strip(), readable_title(target["title"])))
    assert len(rows) == len(expected) == 6
    assert sum(st.dropped.values()) == 2 and set(st.dropped) <= {"no_input_section", "no_target_section"}
    for row, (source, target, title) in zip(rows, expected, strict=True):
        assert validate_row(row) == "conversational"
        user, assistant = _turns(row)
        assert user == f"Summarize the history of present illness below into the {title} section of the " \
                       f"clinical note.\n\n{source}"
        assert assistant == target
        assert row["meta"]["phi_status"] == "raw" and row["meta"]["prompt_id"] == "section_summary:v1"
        assert row.get("text") is None and row.get("sections") is None  # raw note not carried along


def _note_row(sections: list[dict] | None, **content) -> dict:
    meta = new_meta(builder="test", file="notes.csv", locator="line 2", phi_status="raw")
    return new_row(source="notes", meta=meta, sections=sections, **content)


def test_section_summary_params_and_reasons():
    ctx = StepContext(step_dir=DATA)
    radiology = [{"title": "FINDINGS", "text": "No focal consolidation. Heart size normal."},
                 {"title": "IMPRESSION", "text": "No acute cardiopulmonary process."}]
    step = SectionSummary(input_sections=["findings"], target_sections=["impression"], min_target_chars=5,
                          instruction="Write the {target} from the {input}.")
    out = step.process(_note_row(radiology), ctx)
    assert _turns(out) == ("Write the impression from the findings.\n\nNo focal consolidation. Heart size normal.",
                           "No acute cardiopulmonary process.")
    assert step.process(_note_row(radiology[:1]), ctx).reason == "no_target_section"
    assert step.process(_note_row(None, text="a note"), ctx).reason == "no_section"
    strict = SectionSummary(input_sections=["findings"], target_sections=["impression"], min_target_chars=100)
    assert strict.process(_note_row(radiology), ctx).reason == "target_too_short"
    chat = _note_row(None, messages=messages(("user", "q"), ("assistant", "a")))
    assert isinstance(SectionSummary().process(chat, ctx), Drop)
    assert SectionSummary(passthrough=True).process(chat, ctx) is chat
    with pytest.raises(ValueError, match="unknown placeholder"):
        SectionSummary(instruction="Summarize {section}")


def _words(transcript: str) -> list[str]:
    return re.sub(r"\b(?:Doctor|Patient|Guest_family|Guest_clinician)\s*:", " ", transcript).split()


def test_dialogue_note_on_mts_dialog(build):
    result = build({"name": "dlg", "inputs": [
        {"builder": "dialogue_transcripts", "path": str(TASKS / "mts_dialog_sample.csv"), "source": "mts",
         "dialogue_shape": "as_is"}],
        "steps": ["dialogue_note"]})
    rows = _rows(result)
    assert "transcript_shaped" not in result.steps[1].counters
    with (TASKS / "mts_dialog_sample.csv").open(newline="") as fh:
        records = list(csv.DictReader(fh))
    assert len(rows) == len(records) == 12
    for row, rec in zip(rows, records, strict=True):
        assert validate_row(row) == "conversational"
        user, assistant = _turns(row)
        title = readable_title(rec["section_header"])
        assert user.startswith(f"Write the {title} section of the clinical note for this encounter.\n\nDoctor: ")
        assert assistant == rec["section_text"].strip()
        body = user.split("\n\n", 1)[1]
        speakers = [line.split(":")[0] for line in body.splitlines() if line.startswith(("Doctor: ", "Patient: "))]
        assert len(speakers) >= 2 and {"Doctor", "Patient"} <= set(speakers)
        assert _words(body) == _words(rec["dialogue"])  # every utterance of the source, in order
        assert row["id"].endswith(":" + title.replace(" ", "_").replace("/", "_"))
    assert readable_title("GENHX") == "history of present illness"


def test_dialogue_note_counts_transcripts_a_builder_shaped_for_chat(build):
    # dialogue_shape: chat (the builders' default) moves the doctor's opening into a system
    # preamble and trims the patient's last words; a dialogue -> note prompt then misses them.
    result = build({"name": "dlg", "inputs": [
        {"builder": "dialogue_transcripts", "path": str(TASKS / "mts_dialog_sample.csv"), "source": "mts"}],
        "steps": ["dialogue_note"]})
    shaped = sum(v for k, v in result.steps[0].counters.items() if k.startswith("shape."))
    assert shaped > 0 and result.steps[1].counters["transcript_shaped"] > 0


def test_dialogue_note_one_row_per_section():
    ctx = StepContext(step_dir=DATA)
    row = _note_row([{"title": "CC", "text": "Cough."}, {"title": "ASSESSMENT", "text": "Viral bronchitis."},
                     {"title": "PLAN", "text": ""}],
                    messages=messages(("assistant", "What brings you in?"), ("user", "A cough for a week.")))
    out = DialogueNote().process(row, ctx)
    assert [o["id"] for o in out] == [f"{row['id']}:chief_complaint", f"{row['id']}:assessment"]
    assert _turns(out[0])[0].endswith("Doctor: What brings you in?\nPatient: A cough for a week.")
    only = DialogueNote(sections=["assessment"]).process(row, ctx)
    assert len(only) == 1 and _turns(only[0])[1] == "Viral bronchitis."
    assert DialogueNote().process(_note_row(None, messages=row["messages"]), ctx).reason == "no_section"
    assert DialogueNote().process(_note_row(row["sections"]), ctx).reason == "no_dialogue"


def test_mcq_instruction_from_exam_items(build, tmp_path):
    exam = DATA / "exam"
    bad = tmp_path / "bad_items.jsonl"
    bad.write_text(json.dumps({"q": "Which drug?", "a": "B"}) + "\n" + json.dumps({"q": "", "a": "A"}) + "\n")
    result = build({"name": "mcq", "inputs": [
        {"builder": "exam", "path": str(exam / "medmcqa_sample.jsonl")},
        {"builder": "exam", "path": str(exam / "ori_pqal_sample.json")},
        {"builder": "table", "path": str(bad), "columns": {"question": "q", "answer": "a"}}],
        "steps": [{"mcq_instruction": {"explanation": False}}]})
    rows = _rows(result)
    items = load_exam(exam / "medmcqa_sample.jsonl") + load_exam(exam / "ori_pqal_sample.json")
    assert len(rows) == len(items)
    for row, item in zip(rows, items, strict=True):
        assert validate_row(row) == "conversational"
        assert _turns(row) == instruction_turns(item, explanation=False)
        assert row.get("question") is None and row.get("options") is None and row.get("context") is None
    st = result.steps[-1]
    assert st.quarantined == 1 and st.dropped == {}
    assert result.steps[2].dropped == {"empty_question": 1}  # the table builder's own check
    q = [e for e in read_jsonl(result.out_dir / "quarantine.jsonl") if e["step"] == "mcq_instruction"]
    assert len(q) == 1 and "'options' is empty" in q[0]["error"] and "bad_items.jsonl:line 1" in q[0]["where"]


def test_qa_messages_and_source_selection(build, tmp_path):
    src = tmp_path / "qa.jsonl"
    pairs = [{"q": "What is gout?", "a": "A form of inflammatory arthritis caused by urate crystals."},
             {"q": "What is asthma?", "a": ""}]
    src.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    result = build({"name": "qa", "inputs": [
        {"builder": "table", "path": str(src), "source": "faq", "columns": {"question": "q", "answer": "a"}},
        {"builder": "exam", "path": str(DATA / "exam" / "anatomy_dev.csv")}],
        "steps": [{"qa_messages": {"sources": ["faq"], "system": "You are a careful medical assistant."}},
                  {"mcq_instruction": {"sources": ["mmlu"]}}]})
    rows = _rows(result)
    faq = [r for r in rows if r["source"] == "faq"]
    assert [m["role"] for m in faq[0]["messages"]] == ["system", "user", "assistant"]
    assert _turns(faq[0]) == (pairs[0]["q"], pairs[0]["a"])
    assert result.steps[2].dropped == {"no_answer": 1}
    assert result.steps[2].counters["other_source"] == 5 and result.steps[3].counters["other_source"] == 1
    assert len([r for r in rows if r["source"] == "mmlu"]) == 5
    for row in rows:
        assert validate_row(row) == "conversational"


def test_glossary_qa_on_openstax(build):
    result = build({"name": "gloss", "inputs": [
        {"builder": "table", "path": str(TASKS / "openstax_glossary_sample.jsonl"),
         "columns": {"question": "term", "answer": "definition"}}], "steps": ["glossary_qa"]})
    rows = _rows(result)
    terms = [json.loads(line) for line in (TASKS / "openstax_glossary_sample.jsonl").open()]
    assert len(rows) == len(terms) == 40
    variants = set()
    for row, t in zip(rows, terms, strict=True):
        user, assistant = _turns(row)
        assert t["term"] in user
        assert assistant.startswith(t["term"][0].upper() + t["term"][1:] + ": " + t["definition"])
        assert assistant.endswith((".", "!", "?"))
        variants.add(row["meta"]["prompt_id"])
    assert len(variants) >= 3  # paraphrases spread over terms


def test_bad_template_fails_at_recipe_load(build):
    with pytest.raises(RecipeError, match=r"glossary_qa.*unknown placeholder"):
        build({"name": "x", "inputs": [{"builder": "table", "path": str(TASKS / "openstax_glossary_sample.jsonl"),
                                        "columns": {"question": "term"}}],
               "steps": [{"glossary_qa": {"answer": "{meaning}"}}]})


def test_example_recipe_builds(build):
    path = EXAMPLES / "recipes" / "templates.yaml"
    result = build(yaml.safe_load(path.read_text()), base_dir=path.parent)
    rows = _rows(result)
    assert result.totals["quarantined"] == 0 and len(rows) == result.totals["out"] > 20
    assert {r["meta"]["prompt_id"].split(":")[0] for r in rows} == {"section_summary", "dialogue_note", "glossary_qa"}
    for row in rows:
        assert validate_row(row) == "conversational"
