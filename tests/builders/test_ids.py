"""Row ids are unique in every build: a source's own id that repeats is made unique from the
source and the row's locator (and counted), and task makers never emit one id twice."""

from __future__ import annotations

import collections
import csv
import json

import pytest
import yaml
from builder_testkit import one, rows_of
from testutil import DATA, EXAMPLES, SHARED

from meddata.records import new_meta, new_row
from meddata.steps import StepContext

SHARED_MEDQUAD = SHARED / "medquad" / "medquad.jsonl"
MEDDIALOG = DATA / "dialogue" / "meddialog_sample.txt"


def _repeats(ids) -> int:
    return sum(n - 1 for n in collections.Counter(ids).values() if n > 1)


def test_table_ids_from_a_column_that_repeats_are_made_unique(build, tmp_path):
    # MedQuAD's qid is unique only within one collection (the curation/qa_site/mixture
    # duplicates); the full public file, not the sample the bug was found on.
    path = SHARED_MEDQUAD if SHARED_MEDQUAD.exists() else EXAMPLES / "data" / "medquad_sample.jsonl"
    qids = [json.loads(line)["qid"] for line in path.open(encoding="utf-8")]
    assert _repeats(qids) > 0
    result = build(one("table", path, source="medquad",
                       columns={"id": "qid", "user": "question", "assistant": "answer"}))
    rows = rows_of(result)
    ids = [r["id"] for r in rows]
    assert _repeats(ids) == 0
    kept_qids = [r["id"].split("@")[0].removeprefix("medquad:") for r in rows]
    assert result.steps[0].counters["ids.repeated_source_id"] == _repeats(kept_qids) > 0
    # the first row with an id keeps it; later ones get a stable suffix from file + locator
    first = {}
    for r in rows:
        first.setdefault(r["id"].split("@")[0], r["id"])
    assert all("@" not in v for v in first.values())
    again = rows_of(build(one("table", path, source="medquad",
                              columns={"id": "qid", "user": "question", "assistant": "answer"}),
                          out=tmp_path / "again"))
    assert [r["id"] for r in again] == ids


def test_meddialog_records_sharing_an_id_get_different_ids(build, tmp_path):
    # COVID-Dialogue labels two different records id=18: both became <source>:<site>:18.
    text = MEDDIALOG.read_text(encoding="utf-8")
    first_record = text.split("\n\n", 1)[0]
    assert first_record.startswith("id=1001")
    twin = first_record.replace("two weeks", "three days")
    path = tmp_path / "covid_dialogue.txt"
    path.write_text(first_record + "\n\n" + twin + "\n", encoding="utf-8")
    result = build(one("meddialog", path))
    rows = rows_of(result)
    assert len(rows) == 2 and rows[0]["messages"] != rows[1]["messages"]
    assert rows[0]["id"].endswith(":1001") and rows[1]["id"] != rows[0]["id"]
    assert result.steps[0].counters["ids.repeated_source_id"] == 1


def test_dialogue_note_merges_sections_that_share_a_title(build, tmp_path):
    # ACI-Bench: a "Labs:" line inside RESULTS is a second "pertinent results" section; two rows
    # with one id and one prompt but different answers came out.
    path = tmp_path / "aci.csv"
    note = ("CHIEF COMPLAINT\n\nCough.\n\nRESULTS\n\nChest x-ray: no consolidation.\n\nLabs:\n\n"
            "White count 9.1.\n\nASSESSMENT AND PLAN\n\nViral bronchitis. Fluids and rest.")
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["dataset", "encounter_id", "dialogue", "note"])
        w.writerow(["virtassist", "D2N001", "[doctor] what brings you in ?\n[patient] a cough for a week .", note])
    result = build({**one("dialogue_transcripts", path, source="aci", dialogue_shape="as_is"),
                    "steps": ["dialogue_note"]})
    rows = rows_of(result)
    ids = [r["id"] for r in rows]
    assert _repeats(ids) == 0
    results = [r for r in rows if r["id"].endswith(":pertinent_results")]
    assert len(results) == 1
    answer = results[0]["messages"][-1]["content"]
    assert "Chest x-ray: no consolidation." in answer and "White count 9.1." in answer
    assert result.steps[1].counters["merged_same_title_sections"] == 1


def test_dialogue_note_direct_call_keeps_ids_unique():
    from meddata.builders.tasks import DialogueNote

    meta = new_meta(builder="test", file="n.csv", locator="line 2", phi_status="raw")
    row = new_row(source="n", meta=meta, sections=[
        {"title": "RESULTS", "text": "A."}, {"title": "Labs", "text": "B."}, {"title": "PLAN", "text": "C."}],
        messages=[{"role": "assistant", "content": "Hi."}, {"role": "user", "content": "Hello."}])
    out = DialogueNote().process(row, StepContext(step_dir=DATA))
    assert len({o["id"] for o in out}) == len(out) == 2


@pytest.mark.parametrize("name", ["curation", "qa_site", "mixture"])
def test_example_recipes_build_with_unique_ids(build, name):
    path = EXAMPLES / "recipes" / f"{name}.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["output"]["card"] = False
    data["output"]["formats"] = ["arrow", "jsonl"]
    result = build(data, base_dir=path.parent)
    ids = [r["id"] for f in sorted((result.out_dir / "jsonl").glob("*.jsonl"))
           for r in map(json.loads, f.open(encoding="utf-8"))]
    assert ids and _repeats(ids) == 0, collections.Counter(ids).most_common(3)
