"""Dialogue builders on real samples (MTS-Dialog) and format fixtures (ACI-Bench, MedDialog,
ShareGPT): speaker mapping, turn merging, paired notes, the example recipe, robustness."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
from badinput import (
    BAD_KINDS,
    SECRET,
    assert_counts_add_up,
    build_damaged,
)
from builder_testkit import build_example, drops_of, one, quarantine_of, rows_of
from meddata.builders.dialogue import LabelSplitter, SpeakerMap, merge_turns, parse_transcript
from testutil import DATA, SHARED

from meddata.records import annotations, validate_row

DLG = DATA / "dialogue"


def check_conversation(row: dict) -> None:
    assert validate_row(row) == "conversational"
    roles = [m["role"] for m in row["messages"]]
    assert all(a != b for a, b in zip(roles, roles[1:])), "consecutive turns of one role must merge"
    assert all(m["content"].strip() for m in row["messages"])


# -- parsing ------------------------------------------------------------------------------------------


def test_speaker_map_defaults_numbering_typos_and_overrides():
    sm = SpeakerMap()
    assert [sm.resolve(x) for x in ("Doctor", "doctor_2", "Guest_family_1", "Guest_family2", "[patient]",
                                    "Dr.", "human", "gpt")] == [
        "assistant", "assistant", "user", "user", "user", "assistant", "user", "assistant"]
    assert sm.resolve("Docotr_2") == "assistant" and sm.resolve("Gest_family") == "user"
    assert sm.fuzzy_hits == 2
    assert SpeakerMap(fuzzy=False).resolve("Docotr") is None
    swapped = SpeakerMap({"doctor": "user", "patient": "assistant", "Interpreter": "drop"})
    assert (swapped.resolve("Doctor"), swapped.resolve("patient"), swapped.resolve("interpreter")) == (
        "user", "assistant", "drop")


def test_parse_merge_and_errors_never_quote_content():
    sm = SpeakerMap()
    text = ("Doctor: How are you?\nPatient: Tired.\nPatient: And dizzy.\nDoctor: Any falls? Patient: No.\n"
            "Doctor: \nDoctor: Let us check your blood pressure.\nLevels were fine last time.")
    msgs = merge_turns(parse_transcript(text, sm))
    assert msgs == [
        {"role": "assistant", "content": "How are you?"},
        {"role": "user", "content": "Tired.\nAnd dizzy."},
        {"role": "assistant", "content": "Any falls?"},
        {"role": "user", "content": "No."},
        {"role": "assistant", "content": "Let us check your blood pressure.\nLevels were fine last time."},
    ]
    bracket = merge_turns(parse_transcript("[doctor] hi .\n[patient_guest] he fell .\n[patient] i did .", sm))
    assert [m["role"] for m in bracket] == ["assistant", "user"]
    with pytest.raises(ValueError) as err:
        parse_transcript(f"Doctor: hi\n{SECRET.split()[0]}: I am the interpreter", sm)
    assert "line 2" in str(err.value) and SECRET.split()[0] not in str(err.value)
    assert merge_turns(parse_transcript("Doctor: hi\nScribe: note", sm, unknown="drop")) == [
        {"role": "assistant", "content": "hi"}]


# -- MTS-Dialog (real sample) --------------------------------------------------------------------------


def test_mts_dialog_real_sample(build):
    source = list(csv.DictReader((DLG / "mts_dialog_sample.csv").open(encoding="utf-8")))
    result = build(one("dialogue_transcripts", DLG / "mts_dialog_sample.csv", licence="CC-BY-4.0",
                       dialogue_shape="as_is"))
    assert_counts_add_up(result)
    assert result.totals["quarantined"] == 0
    assert result.steps[0].counters["speaker_fuzzy_matches"] == 3  # Guest_clinican, Gest_family, Docotr_2
    rows = {r["id"]: r for r in rows_of(result)}
    dropped = {d["id"]: d["reason"] for d in drops_of(result)}
    assert len(rows) + len(dropped) == len(source)
    for rec in source:
        rid = f"mts_dialog_sample:{rec['ID']}"
        if rid in dropped:
            assert dropped[rid] in ("no_user_turn", "no_assistant_turn")
            continue
        row = rows[rid]
        check_conversation(row)
        assert row["meta"]["phi_status"] == "raw" and row["meta"]["licence"] == "CC-BY-4.0"
        # the paired note section rides along for dialogue -> note tasks
        assert row["sections"] == [{"title": rec["section_header"], "text": rec["section_text"].strip()}]
        # every utterance is in the messages, word for word
        utterances = [re.sub(r"^\s*[\w\" ]+:\s*", "", u).strip() for u in rec["dialogue"].split("\n")]
        joined = "\n".join(m["content"] for m in row["messages"])
        assert all(u in joined for u in utterances if u and not re.search(r"\s(Doctor|Patient):", u))
        assert annotations(row)["turns"] == len(row["messages"])
    first = rows["mts_dialog_sample:0"]
    assert first["messages"][0] == {"role": "assistant", "content": "What brings you back into the clinic today, miss?"}


def test_ids_stay_unique_across_the_files_of_a_folder(build, tmp_path):
    """MTS-Dialog's splits all number their rows from 0: a folder of them must not repeat ids."""
    for split in ("train", "valid"):
        (tmp_path / f"{split}.csv").write_bytes((DLG / "mts_dialog_sample.csv").read_bytes())
    rows = rows_of(build(one("dialogue_transcripts", tmp_path, source="mts"), out=tmp_path / "out"))
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)) and {"mts:train:0", "mts:valid:0"} <= set(ids)


def test_aci_bench_tags_and_full_note_sections(build):
    result = build(one("dialogue_transcripts", DLG / "aci_bench_sample.csv", dialogue_shape="as_is"))
    rows = {r["meta"]["encounter_id"]: r for r in rows_of(result)}
    assert sorted(rows) == ["D2N001", "D2N002", "D2N003"]
    for row in rows.values():
        check_conversation(row)
    knee = rows["D2N001"]
    assert knee["messages"][1] == {"role": "user", "content": (
        "i'm okay . my knee has been bothering me for about two weeks .")}
    assert knee["messages"][3]["content"] == ("the right one . it swells up after i go running .\n"
                                              "and it clicks when i climb stairs .")
    assert [s["title"] for s in knee["sections"]] == [
        "CHIEF COMPLAINT", "HISTORY OF PRESENT ILLNESS", "PHYSICAL EXAM", "ASSESSMENT AND PLAN"]
    dizzy = rows["D2N002"]  # the daughter ([patient_guest]) speaks on the user side
    assert [m["role"] for m in dizzy["messages"]] == ["assistant", "user", "assistant", "user", "assistant",
                                                       "user", "assistant", "user"]
    assert "almost fell in the kitchen" in dizzy["messages"][1]["content"]


def test_unknown_speaker_is_quarantined_by_default_and_mappable(build, tmp_path):
    f = tmp_path / "visits.csv"
    with f.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["encounter_id", "dialogue"])
        w.writerow(["e1", "[doctor] how is the cough ?\n[interpreter] she says it is better .\n[patient] si ."])
        w.writerow(["e2", "[doctor] any fever ?\n[patient] no ."])
    result = build(one("dialogue_transcripts", f, dialogue_shape="as_is"), out=tmp_path / "a")
    q = quarantine_of(result)
    assert result.totals["out"] == 1 and len(q) == 1
    assert q[0]["locator"] == "line 2" and "unknown speaker label at line 2" in q[0]["error"]
    assert "interpreter" not in q[0]["error"]
    mapped = build(one("dialogue_transcripts", f, speakers={"interpreter": "user"}, dialogue_shape="as_is"),
                   out=tmp_path / "b")
    assert mapped.totals["out"] == 2
    rows = {r["meta"]["encounter_id"]: r for r in rows_of(mapped)}
    assert rows["e1"]["messages"][1]["content"] == "she says it is better .\nsi ."


def test_a_missing_named_column_is_one_quarantine_entry(build):
    result = build(one("dialogue_transcripts", DLG / "aci_bench_sample.csv", dialogue_field="transcript"))
    (q,) = quarantine_of(result)
    assert result.totals["out"] == 0 and "column(s) 'transcript' not in the header" in q["error"]


# -- MedDialog and ShareGPT -------------------------------------------------------------------------------


def test_meddialog_text_format(build):
    result = build(one("meddialog", DLG / "meddialog_sample.txt"))
    assert_counts_add_up(result)
    rows = {r["id"]: r for r in rows_of(result)}
    assert sorted(rows) == ["meddialog:healthcaremagic.com:1002", "meddialog:icliniq.com:1001"]
    r1 = rows["meddialog:icliniq.com:1001"]
    check_conversation(r1)
    assert r1["messages"][0]["content"].startswith("Hello doctor,\nI have had a headache")
    assert r1["sections"] == [{"title": "Description",
                               "text": "Q. What could cause a persistent headache for two weeks?"}]
    assert r1["meta"]["locator"] == "line 1" and annotations(r1)["site"] == "icliniq.com"
    r2 = rows["meddialog:healthcaremagic.com:1002"]
    assert [m["role"] for m in r2["messages"]] == ["user", "assistant"]  # two Patient: blocks merged
    assert r2["messages"][1]["content"].endswith("if you need\nibuprofen for more than a week.")  # "Note:" kept
    assert result.steps[0].dropped == {"no_assistant_turn": 1}
    (q,) = quarantine_of(result)
    lines = (DLG / "meddialog_sample.txt").read_text(encoding="utf-8").split("\n")
    assert "id=1004 has no 'Dialogue' block" in q["error"] and q["locator"] == f"line {lines.index('id=1004') + 1}"


def test_sharegpt_json_and_jsonl(build, tmp_path):
    result = build(one("sharegpt", DLG / "sharegpt_sample.json"), out=tmp_path / "a")
    rows = {r["id"]: r for r in rows_of(result)}
    assert sorted(rows) == ["sharegpt_sample:sg-1", "sharegpt_sample:sg-2"]
    assert [m["role"] for m in rows["sharegpt_sample:sg-1"]["messages"]] == [
        "system", "user", "assistant", "user", "assistant"]
    assert rows["sharegpt_sample:sg-2"]["messages"] == [
        {"role": "user", "content": "How long should I wait to swim after eating?\nI heard it is one hour."},
        {"role": "assistant", "content": "There is no medical evidence that you need to wait."}]
    assert result.steps[0].dropped == {"no_assistant_turn": 1}
    items = json.loads((DLG / "sharegpt_sample.json").read_text(encoding="utf-8"))
    jl = tmp_path / "conv.jsonl"
    jl.write_text("\n".join(json.dumps(i) for i in items) + '\n{"conversations": [{"from": "alien", "value": "x"}]}\n',
                  encoding="utf-8")
    result = build(one("sharegpt", jl), out=tmp_path / "b")
    assert [r["messages"] for r in rows_of(result)] == [r["messages"] for r in rows.values()]
    (q,) = quarantine_of(result)
    assert q["locator"] == "line 4" and "'conversations[0].from' is an unknown speaker" in q["error"]


def test_sharegpt_large_array_streams_item_by_item(build, tmp_path):
    """A JSON array is parsed one item at a time: a damaged item ends the file with a line number,
    the items before it are kept."""
    items = [{"id": i, "conversations": [{"from": "human", "value": f"question {i} " + "x" * 3000},
                                         {"from": "gpt", "value": f"answer {i}"}]} for i in range(600)]
    text = json.dumps(items, indent=1)
    cut = text.index('"id": 550')
    f = tmp_path / "big.json"
    f.write_text(text[:cut] + '"id": 550, "conversations": [{"from": "human", "val', encoding="utf-8")
    result = build(one("sharegpt", f))
    assert result.totals["out"] == 550
    (q,) = quarantine_of(result)
    assert "truncated" in q["error"] and q["locator"] == f"line {text[:cut].count(chr(10)) + 1}"


# -- recipe ----------------------------------------------------------------------------------------------


def test_dialogue_recipe_builds_and_rows_validate(build):
    _, rows = build_example(build, "dialogue")
    for n, r in enumerate(rows):
        validate_row(r, where=f"dialogue row {n}")
    assert any(r.get("sections") for r in rows)


# -- robustness --------------------------------------------------------------------------------------------

GOOD = {
    "dialogue_transcripts": ("visits.csv", b'ID,dialogue\n1,"Doctor: any pain?\nPatient: yes, chest pain."\n'),
    "meddialog": ("dialogues.txt", b"id=1\nhttps://x.org/q\nDescription\nchest pain\nDialogue\nPatient:\npain\n"
                                   b"Doctor:\nrest\n"),
    "sharegpt": ("conv.json", b'[{"conversations": [{"from": "human", "value": "chest pain"}, '
                              b'{"from": "gpt", "value": "rest"}]}]'),
}
FOLDER_BUILDERS = ("meddialog",)


@pytest.mark.parametrize("kind", BAD_KINDS)
@pytest.mark.parametrize("builder", sorted(GOOD))
def test_robustness_bad_inputs_quarantine_and_finish(builder, kind, build, tmp_path):
    name, good = GOOD[builder]
    result = build_damaged(build, tmp_path, builder, {name: good}, kind, read_folder=builder in FOLDER_BUILDERS)
    assert result.totals["out"] == 0


# -- speaker labels in the middle of a line (issue 12, item 4) -----------------------------------------

#: The full public MTS-Dialog files; the tests that read them skip where they are absent, and
#: always run on the bundled sample of the same corpus.
MTS_SHARED = SHARED / "mts-dialog"
MTS_SAMPLE = "bundled sample"


def _mts_file(name: str) -> Path:
    src = DLG / "mts_dialog_sample.csv" if name == MTS_SAMPLE else MTS_SHARED / name
    if not src.exists():
        pytest.skip(f"{src} is not available")
    return src
_LINE_LABEL = re.compile(r"^([A-Za-z][\w]*)\s*:\s*(\S.*)?$")
_SEPARATORS = (". ", " - ", ", ", " ")


def _on_one_line(dialogue: str, k: int) -> str:
    """Put every second turn on the line of the turn before it, as back-translated transcripts do,
    joined by a full stop, a dash, a comma or a space (cycling). Lines ending in a bare label stay."""
    out: list[str] = []
    for i, line in enumerate(dialogue.splitlines()):
        m = _LINE_LABEL.match(line.strip())
        prev = _LINE_LABEL.match(out[-1].strip()) if out else None
        if m and prev and prev.group(2) and (i + k) % 2 == 0:
            sep = _SEPARATORS[(i + k) // 2 % len(_SEPARATORS)]
            out[-1] = out[-1].rstrip().rstrip(".") + sep + line.strip()
        else:
            out.append(line)
    return "\n".join(out)


def _normalised(messages: list[dict]) -> list[tuple[str, str]]:
    return [(m["role"], re.sub(r"[\s.,\-]+", " ", m["content"]).strip()) for m in messages]


@pytest.mark.parametrize("name", [MTS_SAMPLE, "MTS-Dialog-TrainingSet.csv", "MTS-Dialog-ValidationSet.csv",
                                  "MTS-Dialog-TestSet-1-MEDIQA-Chat-2023.csv"])
def test_turns_joined_on_one_line_parse_like_the_original(build, tmp_path, name):
    # Real MTS-Dialog dialogues (Guest_family_1, Doctor_2, misspelt Gest_family/Docotr_2 at line
    # starts) with turns moved onto the previous line: every turn must still be its own turn.
    src = _mts_file(name)
    with src.open(newline="", encoding="utf-8") as fh:
        records = list(csv.DictReader(fh))
    col = next(k for k in records[0] if k.strip() == "dialogue")
    joined = tmp_path / src.name
    with joined.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(records[0]))
        w.writeheader()
        for k, rec in enumerate(records):
            w.writerow({**rec, col: _on_one_line(rec[col], k)})
    original = build(one("dialogue_transcripts", src, source="mts"), out=tmp_path / "a")
    moved = build(one("dialogue_transcripts", joined, source="mts"), out=tmp_path / "b")
    a, b = rows_of(original), rows_of(moved)
    assert len(a) == len(b) == len(records) - original.totals["dropped"] - original.totals["quarantined"]
    differ = [ra["id"] for ra, rb in zip(a, b, strict=True) if _normalised(ra["messages"]) != _normalised(rb["messages"])]
    assert differ == []
    assert moved.steps[0].counters["speaker_labels_mid_line"] > original.steps[0].counters.get(
        "speaker_labels_mid_line", 0)


def test_mid_line_labels_with_numbers_misspellings_dashes_and_commas():
    speakers = SpeakerMap()
    text = ("Doctor: How is he eating?\nGuest_family_1: Not well.\nGest_family: He skips meals.\n"
            "Doctor: Any fever? - Guest_family_1: No, Gest_family: only a cough, Doctor_2: Thank you.\n"
            "Patient: I told the doctor: it hurts.")
    labels = LabelSplitter.learn([text], speakers)
    turns = parse_transcript(text, speakers, "colon", labels=labels)
    assert [(r, c.strip()) for r, c in turns] == [
        ("assistant", "How is he eating?"), ("user", "Not well."), ("user", "He skips meals."),
        ("assistant", "Any fever?"), ("user", "No,"), ("user", "only a cough,"), ("assistant", "Thank you."),
        ("user", "I told the doctor: it hurts.")]
    assert labels.splits == 3


# -- dialogue_shape (issue 12, item 5) ------------------------------------------------------------------


def _expected_chat_shape(msgs: list[dict]) -> list[dict]:
    out = [dict(m) for m in msgs]
    if out and out[0]["role"] == "assistant":
        out[0] = {"role": "system", "content": "You opened this conversation by saying:\n" + out[0]["content"]}
    while out and out[-1]["role"] == "user":
        out.pop()
    return out


@pytest.mark.parametrize("name", [MTS_SAMPLE, "MTS-Dialog-ValidationSet.csv",
                                  "MTS-Dialog-TestSet-2-MEDIQA-Sum-2023.csv"])
def test_chat_shape_on_real_mts_dialog(build, tmp_path, name):
    src = _mts_file(name)
    as_is = build(one("dialogue_transcripts", src, source="mts", dialogue_shape="as_is"), out=tmp_path / "a")
    chat = build(one("dialogue_transcripts", src, source="mts"), out=tmp_path / "b")
    assert_counts_add_up(chat)
    raw = {r["id"]: r["messages"] for r in rows_of(as_is)}
    shaped = {r["id"]: r for r in rows_of(chat)}
    replied = [m for m in raw.values() if any(t["role"] == "assistant" for t in _expected_chat_shape(m))]
    starts = sum(1 for m in replied if m[0]["role"] == "assistant")
    ends = sum(1 for m in replied if m[-1]["role"] == "user")
    assert starts > 0 and ends > 0
    counters = chat.steps[0].counters
    assert counters["shape.opening_to_system"] == starts and counters["shape.trailing_user_trimmed"] == ends
    dropped = {d["id"]: d["reason"] for d in drops_of(chat)}
    for rid, msgs in raw.items():
        expected = _expected_chat_shape(msgs)
        if not any(m["role"] == "assistant" for m in expected):
            assert dropped[rid] == "no_assistant_reply"
            continue
        row = shaped[rid]
        assert row["messages"] == expected
        roles = [m["role"] for m in row["messages"] if m["role"] != "system"]
        assert roles[0] == "user" and roles[-1] == "assistant"
        assert ("shaped" in annotations(row)) == (expected != msgs)


def test_drop_opening_shape_and_the_dialogue_example(build, tmp_path):
    result = build(one("dialogue_transcripts", DLG / "aci_bench_sample.csv", dialogue_shape="drop_opening"))
    rows = rows_of(result)
    assert result.steps[0].counters["shape.opening_dropped"] == len(rows) == 3
    assert all(r["messages"][0]["role"] == "user" and r["messages"][-1]["role"] == "assistant" for r in rows)
    _, example = build_example(build, "dialogue")
    for row in example:  # the example as shipped: every row fits a chat template and ends on the doctor
        roles = [m["role"] for m in row["messages"] if m["role"] != "system"]
        assert roles[0] == "user" and roles[-1] == "assistant", row["id"]
