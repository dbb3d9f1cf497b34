"""EHR builders on real samples: MIMIC-layout note tables, MTSamples, FHIR bundles, Synthea CSV,
a folder of notes; the section splitter; the example recipes; robustness against bad files."""

from __future__ import annotations

import base64
import csv
import gzip
import json
import re
from pathlib import Path

import pytest
from badinput import BAD_KINDS, assert_counts_add_up, build_damaged
from builder_testkit import build_example, drops_of, one, quarantine_of, rows_of
from meddata.builders.sections import canonical_title, find_section, split_sections, unflatten_mtsamples
from testutil import DATA, read_jsonl

from meddata import recipe as recipe_mod
from meddata.records import annotations, validate_row

EHR = DATA / "ehr"
BUNDLE = next((EHR / "fhir").glob("*.json"))


# -- section splitting ------------------------------------------------------------------------------------


def test_sections_line_headings_of_a_discharge_summary():
    text = (
        "Admission Date: [**2151-7-16**]\nService: MEDICINE\n\nChief Complaint:\nDyspnea\n\n"
        "HISTORY OF PRESENT ILLNESS: 71M with CHF.\nMore history.\n\nBrief Hospital Course:\nDiuresed.\n\n"
        "ASSESSMENT AND PLAN\nContinue torsemide.\n# Follow up\nClinic in 1 week.\n"
    )
    sections = split_sections(text)
    assert [s["title"] for s in sections] == [
        "", "Service", "Chief Complaint", "HISTORY OF PRESENT ILLNESS", "Brief Hospital Course",
        "ASSESSMENT AND PLAN", "Follow up"]
    assert sections[0]["text"] == "Admission Date: [**2151-7-16**]"
    assert sections[3]["text"] == "71M with CHF.\nMore history."
    assert find_section(sections, "hospital course")["text"] == "Diuresed."  # by canonical name
    assert find_section(sections, "HPI")["title"] == "HISTORY OF PRESENT ILLNESS"
    assert find_section(sections, "discharge diagnosis") is None


def test_sections_mtsamples_inline_headings():
    flat = ("SUBJECTIVE:,  This 23-year-old white female presents with allergies.,MEDICATIONS: , Allegra.,"
            "OBJECTIVE:,Vitals:  Weight was 130 pounds.,HEENT:  Throat mildly erythematous.,ASSESSMENT:,  "
            "Allergic rhinitis.,PLAN:,1.  Try Zyrtec.,2.  Nasonex samples given.")
    sections = split_sections(flat)
    assert [s["title"] for s in sections] == ["SUBJECTIVE", "MEDICATIONS", "OBJECTIVE", "ASSESSMENT", "PLAN"]
    # sub-headings stay inside their section; the scrape's comma line breaks become lines
    assert sections[2]["text"] == "Vitals:  Weight was 130 pounds.\nHEENT:  Throat mildly erythematous."
    assert sections[4]["text"] == "1.  Try Zyrtec.\n2.  Nasonex samples given."
    assert ":," not in unflatten_mtsamples(flat)


def test_sections_nursing_capitals_split_only_on_known_names():
    note = ("NEURO: ALERT AND ORIENTED X3, FOLLOWS COMMANDS.\nPT RESTING COMFORTABLY\n"
            "RESP: LUNGS CLEAR, ON 2L NC.\nPLAN: CONT DIURESIS, MONITOR LYTES.\n")
    sections = split_sections(note)
    assert [s["title"] for s in sections] == ["", "PLAN"]
    assert "PT RESTING COMFORTABLY" in sections[0]["text"]
    assert split_sections("Called the patient. Potassium is normal.") == []


def test_canonical_titles_cover_mts_dialog_codes():
    assert canonical_title("GENHX") == "history of present illness"
    assert canonical_title("FAM/SOCHX") == "social history"
    assert canonical_title("Brief Hospital Course:") == "hospital course"
    assert canonical_title("Dr. Smith") is None


# -- note tables ------------------------------------------------------------------------------------------


def test_mimic3_noteevents(build):
    result = build(one("mimic_notes", EHR / "NOTEEVENTS_sample.csv", licence="synthetic-test"))
    rows = rows_of(result)
    assert_counts_add_up(result)
    assert result.steps[0].dropped == {"marked_error": 1, "empty_text": 1}
    assert [r["id"] for r in rows] == ["mimic:101", "mimic:102", "mimic:103", "mimic:104"]
    for r in rows:
        assert validate_row(r) == "language_modeling"
        assert r["meta"]["phi_status"] == "raw" and r["meta"]["licence"] == "synthetic-test"
        assert r["meta"]["file"].endswith("NOTEEVENTS_sample.csv") and r["meta"]["locator"].startswith("line ")
    ds = rows[0]
    assert (ds["meta"]["patient_id"], ds["meta"]["encounter_id"]) == ("9001", "190001")
    assert annotations(ds) == {"category": "Discharge summary", "description": "Report"}
    course = find_section(ds["sections"], "brief hospital course")
    assert course["text"].startswith("71 y/o man with ischemic cardiomyopathy admitted")
    assert find_section(ds["sections"], "discharge medications")["text"].startswith("1. Torsemide")
    assert rows[3]["meta"]["encounter_id"] is None  # outpatient echo: no HADM_ID
    # drop-log rows of raw notes carry no note text
    assert all("TEXT" not in json.dumps(d) and "Torsemide" not in json.dumps(d) for d in drops_of(result))


def test_mimic4_gzip_and_category_filter(build):
    result = build(one("mimic_notes", EHR / "mimic4_notes_sample.csv.gz", categories=["ds"]))
    rows = rows_of(result)
    assert [r["id"] for r in rows] == ["mimic:10000032-DS-21"]
    assert result.steps[0].dropped == {"category_not_selected": 1, "empty_text": 1}
    r = rows[0]
    assert (r["meta"]["patient_id"], r["meta"]["encounter_id"]) == ("10000032", "22595853")
    assert find_section(r["sections"], "Brief Hospital Course")["text"].startswith("The patient underwent")
    assert find_section(r["sections"], "Allergies")["text"] == "Penicillins"


def test_mimic_wrong_header_is_one_clear_quarantine_entry(build, tmp_path):
    bad = tmp_path / "notes.csv"
    bad.write_text("patient,note\n1,hello\n2,world\n", encoding="utf-8")
    result = build(one("mimic_notes", bad))
    q = quarantine_of(result)
    assert result.totals["out"] == 0 and len(q) == 1
    assert "lacks the required column(s)" in q[0]["error"] and "mimic3: SUBJECT_ID" in q[0]["error"]
    assert q[0]["locator"] == "line 2"


def test_mtsamples_real_sample(build):
    source_rows = read_jsonl(EHR / "mtsamples_sample.jsonl")
    result = build(one("mtsamples", EHR / "mtsamples_sample.jsonl", licence="CC0-1.0"))
    rows = rows_of(result)
    assert_counts_add_up(result)
    empty = sum(1 for r in source_rows if not (r["transcription"] or "").strip())
    assert result.steps[0].dropped == {"empty_text": empty}
    assert len(rows) == len(source_rows) - empty
    by_id = {r["id"]: r for r in rows}
    first = by_id[f"mtsamples:{source_rows[0]['note_id']}"]
    assert first["meta"]["phi_status"] == "raw"
    assert annotations(first)["specialty"] == source_rows[0]["medical_specialty"].strip()
    titles = [s["title"] for s in first["sections"]]
    assert titles[:3] == ["SUBJECTIVE", "MEDICATIONS", "ALLERGIES"]
    with_sections = sum(1 for r in rows if r.get("sections"))
    assert with_sections >= 0.8 * len(rows)
    assert not any(re.search(r"[A-Z]{4,}:\s*,", r["text"]) for r in rows)  # scrape artifacts restored


def test_note_table_with_a_field_map(build):
    source = read_jsonl(EHR / "synthea_notes_sample.jsonl")
    result = build(one("note_table", EHR / "synthea_notes_sample.jsonl", source="synthea-notes",
                       fields={"text": "text", "id": "doc_id", "patient_id": "patient_id"}, labels=["type"]))
    rows = rows_of(result)
    assert [r["id"] for r in rows] == [f"synthea-notes:{s['doc_id']}" for s in source]
    for row, src in zip(rows, source):
        validate_row(row)
        assert row["text"] == src["text"] and row["meta"]["patient_id"] == src["patient_id"]
        assert annotations(row) == {"type": src["type"]}
        assert [s["title"] for s in row["sections"]][1:3] == ["Chief Complaint", "History of Present Illness"]


def test_note_table_fields_are_checked_when_the_recipe_loads(build):
    with pytest.raises(recipe_mod.RecipeError, match="fields: {text: <column>}"):
        build(one("note_table", EHR / "synthea_notes_sample.jsonl", fields={"id": "doc_id"}))


def test_note_folder_with_ids_from_paths(build):
    result = build(one("note_folder", EHR / "notes",
                       id_pattern=r"p(?P<patient_id>\d+)/a(?P<encounter_id>\d+)_(?P<note_id>\w+)\.txt"))
    rows = {r["meta"]["locator"]: r for r in rows_of(result)}
    assert sorted(rows) == ["p9001/a190001_ed.txt", "p9001/a190001_progress.txt", "p9002/a190002_phone.txt"]
    ed = rows["p9001/a190001_ed.txt"]
    assert (ed["meta"]["patient_id"], ed["meta"]["encounter_id"], ed["id"]) == ("9001", "190001", "notes:ed")
    assert find_section(ed["sections"], "hpi")["text"].startswith("71-year-old man")
    assert find_section(rows["p9001/a190001_progress.txt"]["sections"], "assessment and plan") is not None
    assert rows["p9002/a190002_phone.txt"].get("sections") is None


# -- FHIR and Synthea ------------------------------------------------------------------------------------


def test_fhir_bundle_notes_and_facts(build):
    bundle = json.loads(BUNDLE.read_text(encoding="utf-8"))
    resources = [e["resource"] for e in bundle["entry"]]
    patient = next(r for r in resources if r["resourceType"] == "Patient")
    docs = [r for r in resources if r["resourceType"] == "DocumentReference"]
    result = build(one("fhir_bundles", EHR / "fhir", licence="synthetic"))
    rows = rows_of(result)
    assert len(rows) == len(docs) and result.totals["quarantined"] == 0
    for row, doc in zip(rows, docs):
        validate_row(row)
        assert row["text"] == base64.b64decode(doc["content"][0]["attachment"]["data"]).decode("utf-8")
        assert row["meta"]["patient_id"] == patient["id"]
        assert row["meta"]["encounter_id"] == doc["context"]["encounter"][0]["reference"].split(":")[-1]
        assert row["meta"]["locator"].startswith("Bundle/entry[")
        assert find_section(row["sections"], "chief complaint") is not None
        facts = json.loads(row["facts"])
        assert facts["patient"]["gender"] == patient["gender"]
        assert isinstance(facts["patient"]["age_years"], int)
        # no identifiers and no calendar dates in facts: the de-identifier never looks there
        names = [n for name in patient["name"] for n in name.get("given", []) + [name.get("family", "")]]
        assert not any(n and n in row["facts"] for n in names)
        assert patient["id"] not in row["facts"]
        assert not re.search(r"\d{4}-\d{2}-\d{2}", row["facts"])
    encounter_obs = [r for r in resources if r["resourceType"] == "Observation"
                     and r.get("encounter", {}).get("reference", "").endswith(rows[0]["meta"]["encounter_id"])]
    assert len(json.loads(rows[0]["facts"])["observations"]) == len(encounter_obs) > 0


def test_fhir_malformed_bundles_are_quarantined_with_entry_locators(build, tmp_path):
    bundle = json.loads(BUNDLE.read_text(encoding="utf-8"))
    docs = [i for i, e in enumerate(bundle["entry"]) if e["resource"]["resourceType"] == "DocumentReference"]
    bundle["entry"][docs[0]]["resource"]["content"][0]["attachment"]["data"] = "%%% not base64 %%%"
    att = bundle["entry"][docs[1]]["resource"]["content"][0]["attachment"]
    att.pop("data")
    att["url"] = "https://example.org/note"
    (tmp_path / "b.json").write_text(json.dumps(bundle), encoding="utf-8")
    (tmp_path / "patient.json").write_text(json.dumps({"resourceType": "Patient", "id": "x"}), encoding="utf-8")
    no_docs = {"resourceType": "Bundle", "entry": [e for e in bundle["entry"]
                                                   if e["resource"]["resourceType"] != "DocumentReference"]}
    (tmp_path / "c.json").write_text(json.dumps(no_docs), encoding="utf-8")
    result = build(one("fhir_bundles", tmp_path))
    assert_counts_add_up(result)
    q = {(Path(e["file"]).name, e["locator"]): e["error"] for e in quarantine_of(result)}
    assert "not valid base64" in q[("b.json", f"Bundle/entry[{docs[0]}]")]
    assert "'url' is not fetched" in q[("b.json", f"Bundle/entry[{docs[1]}]")]
    assert "'resourceType' must be 'Bundle'" in q[("patient.json", "file")]
    assert result.steps[0].dropped == {"no_document_reference": 1}
    assert result.totals["out"] == len(docs) - 2


def test_synthea_csv_patient_summaries(build):
    patients = list(csv.DictReader((EHR / "synthea_csv" / "patients.csv").open(encoding="utf-8")))
    conditions = list(csv.DictReader((EHR / "synthea_csv" / "conditions.csv").open(encoding="utf-8")))
    result = build(one("synthea_csv", EHR / "synthea_csv"))
    rows = {r["meta"]["patient_id"]: r for r in rows_of(result)}
    assert sorted(rows) == sorted(p["Id"] for p in patients)
    for p in patients:
        row = rows[p["Id"]]
        validate_row(row)
        facts = json.loads(row["facts"])
        n_cond = sum(1 for c in conditions if c["PATIENT"] == p["Id"])
        assert len(facts.get("conditions", [])) == min(n_cond, 50)
        if n_cond:
            assert find_section(row["sections"], "Conditions")["text"].count("\n- ") == n_cond - 1
        for identifying in (p["FIRST"], p["LAST"], p["SSN"], p["ADDRESS"], p["BIRTHDATE"]):
            assert identifying not in row["text"] and identifying not in row["facts"]
        assert not re.search(r"\d{4}-\d{2}-\d{2}", row["facts"])


# -- example recipes ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ehr_notes", "fhir"])
def test_example_recipe_builds_and_rows_validate(name, build):
    result, rows = build_example(build, name)
    assert rows and result.totals["quarantined"] == 0
    for n, r in enumerate(rows):
        validate_row(r, where=f"{name} row {n}")
        assert r["meta"]["phi_status"] == "raw"


# -- robustness ---------------------------------------------------------------------------------------------

FOLDER_BUILDERS = ("note_folder", "synthea_csv", "fhir_bundles")
GOOD = {
    "mimic_notes": ("notes.csv", b'SUBJECT_ID,HADM_ID,CATEGORY,TEXT\n1,2,Nursing,"chest pain resolved"\n'),
    "mtsamples": ("notes.jsonl", b'{"note_id": 1, "transcription": "PLAN:, rest for the pain."}\n'),
    "note_folder": ("note.txt", b"ASSESSMENT:\nchest pain, resolved.\n"),
    "fhir_bundles": ("bundle.json", b'{"resourceType": "Bundle", "entry": [{"resource": {"resourceType": '
                                    b'"DocumentReference", "content": [{"attachment": {"contentType": "text/plain",'
                                    b' "data": "cGFpbg=="}}]}}], "note": "pain"}'),
    "synthea_csv": ("patients.csv", b"Id,BIRTHDATE,GENDER,FIRST\np1,1980-01-01,F,pain\n"),
}


@pytest.mark.parametrize("kind", BAD_KINDS)
@pytest.mark.parametrize("builder", sorted(GOOD))
def test_robustness_bad_inputs_quarantine_and_finish(builder, kind, build, tmp_path):
    name, good = GOOD[builder]
    files = {name: good}
    if builder == "synthea_csv":  # a linked table with the same damage
        files["conditions.csv"] = b"START,PATIENT,DESCRIPTION\n2020-01-01,p1,pain\n"
    result = build_damaged(build, tmp_path, builder, files, kind, read_folder=builder in FOLDER_BUILDERS)
    assert result.totals["out"] == 0


def test_gzip_note_table_streams(build, tmp_path):
    """The same table gzipped gives the same rows (MIMIC ships NOTEEVENTS.csv.gz)."""
    src = EHR / "NOTEEVENTS_sample.csv"
    gz = tmp_path / "NOTEEVENTS.csv.gz"
    with gzip.open(gz, "wb") as fh:
        fh.write(src.read_bytes())
    plain = rows_of(build(one("mimic_notes", src), out=tmp_path / "a"))
    zipped = rows_of(build(one("mimic_notes", gz), out=tmp_path / "b"))
    assert [r["text"] for r in plain] == [r["text"] for r in zipped]
