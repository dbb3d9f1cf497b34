"""note_tasks: de-identified notes -> summary, problem list, medication list and discharge
instructions through the real openai client and the local server; raw-PHI notes are refused
for a remote endpoint (before any connection) and allowed on this machine."""

from __future__ import annotations

import pytest
from generators_testkit import (
    NOTES,
    RAW_NOTES,
    context,
    llms,
    make_row,
    notes_input,
    output_rows,
    quarantine,
    recipe,
    server_fixture,
    step_stats,
)
from meddata.builders.generators.note_tasks import (
    INSTRUCTIONS,
    NO_MEDICATIONS,
    NoteTasks,
    format_answer,
    grounded,
)
from testutil import read_jsonl

from meddata.llm import PHIGuardError
from meddata.records import annotations, validate_row

REMOTE = "http://llm.example.invalid/v1"  # reserved: never resolves
server = server_fixture()


def raw_notes_input() -> dict:
    return {"builder": "table", "path": str(RAW_NOTES), "source": "synthea", "phi_status": "raw",
            "columns": {"id": "doc_id", "text": "text", "patient_id": "patient_id"}}


def test_note_tasks_make_one_conversation_per_task(server, tmp_path, build):
    result = build(recipe("notes", [notes_input()], [{"note_tasks": {"llm": "local"}}], llms(server.url, tmp_path)))
    st = step_stats(result, "note_tasks")
    rows = output_rows(result)
    assert st.rows_in == 4 and st.counters["llm.requests"] == 16
    rejected = sum(v for k, v in st.counters.items() if k.startswith("note_tasks.rejected."))
    assert len(rows) + rejected == 16 and len(rows) >= 12
    notes = {str(n["note_id"]): n["transcription"].strip() for n in read_jsonl(NOTES)}
    tasks = {task: 0 for task in INSTRUCTIONS}
    for row in rows:
        assert validate_row(row) == "conversational"
        task = annotations(row)["note_tasks.task"]
        tasks[task] += 1
        user, assistant = row["messages"]
        instruction, _, note = user["content"].partition("\n\n")
        assert instruction == INSTRUCTIONS[task] and note in notes.values()
        meta = row["meta"]
        assert meta["phi_status"] == "deidentified" and meta["prompt_id"] == "note_tasks.v1"
        if task == "problem_list":
            assert all(line.startswith("- ") and line.endswith(("(active)", "(chronic)", "(resolved)", "(suspected)"))
                       for line in assistant["content"].splitlines())
    assert all(n >= 3 for n in tasks.values()), tasks
    # every request carried the note and asked for its task's schema
    asked = {tuple(e["body"]["response_format"]["json_schema"]["schema"]["required"]) for e in server.chat_log()}
    assert asked == {("summary",), ("problems",), ("medications",), ("instructions",)}
    assert len({r["id"] for r in rows}) == len(rows)


def test_medication_lists_must_be_grounded_in_the_note():
    note = "She takes lisinopril 10 mg daily and metformin-XR 500 mg twice a day; aspirin was stopped."
    words = set(note.lower().replace("-", " ").replace(";", " ").split())
    assert grounded("Lisinopril", words) and grounded("aspirin 81 mg", words)
    assert not grounded("Atorvastatin", words) and not grounded("", words)
    assert format_answer("medication_list", {"medications": []}) == NO_MEDICATIONS
    assert format_answer("medication_list", {"medications": [
        {"name": "Lisinopril", "dose": "10 mg", "route": "", "frequency": "daily"}]}) == "- Lisinopril: 10 mg, daily"


def test_requests_carry_each_note_phi_status(tmp_path):
    step = NoteTasks({"llm": "local", "tasks": ["summary", "medication_list"], "min_chars": 10})
    step.ensure_setup(context(tmp_path, REMOTE))
    note = "Patient seen for asthma follow-up; uses salbutamol inhaler as needed. Plan: review in 3 months."
    for status in ("raw", "deidentified"):
        row = make_row(text=note, phi_status=status)
        variables = step.prepare(row)
        reqs = step.requests(row, [], variables)
        assert [r.phi_status for r in reqs] == [status, status] and len({r.json_schema["required"][0]
                                                                          for r in reqs}) == 2


def test_raw_notes_are_refused_for_a_remote_llm_before_anything_is_sent(tmp_path, build):
    data = recipe("raw", [raw_notes_input()], [{"note_tasks": {"llm": "remote"}}],
                  llms(REMOTE, tmp_path, name="remote", max_retries=0))
    with pytest.raises(PHIGuardError) as info:
        build(data)
    msg = str(info.value)
    assert "add the 'deid' step before this step" in msg and "llm.example.invalid" in msg
    assert "phi_status='raw'" in msg
    for note in read_jsonl(RAW_NOTES):  # no PHI in the message
        assert note["patient_id"] not in msg
        assert all(line not in msg for line in note["text"].splitlines() if len(line) > 15)
    assert not (tmp_path / "cache.sqlite").exists()


def test_raw_notes_may_use_an_llm_on_this_machine(server, tmp_path, build):
    first = read_jsonl(RAW_NOTES)[0]["text"].strip()
    server.add_fault("bad_content", count=None, match=first[:40])  # one note: broken JSON, repair included
    result = build(recipe("raw", [raw_notes_input()], [{"note_tasks": {"llm": "local", "tasks": ["summary"]}}],
                          llms(server.url, tmp_path)))
    rows, entries = output_rows(result), quarantine(result)
    assert len(rows) == 1 and len(entries) == 1 and len(server.chat_log()) == 3  # 2 notes + 1 repair turn
    for row in rows:
        assert row["meta"]["phi_status"] == "raw" and row["meta"]["patient_id"]
    for e in entries:  # the quarantine file is no PHI store
        assert "raw output withheld (the source row holds raw PHI)" in e["error"]
