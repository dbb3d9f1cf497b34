"""The kg builder: triples -> templated QA with aggregated tails, the ChatDoctor disease
table, templates, the example recipe and malformed input."""

from __future__ import annotations

import ast
import csv
import json

import pytest
import yaml
from badinput import bad_inputs, check_robust_build, robust_cases
from meddata.builders.kg import join_list, load_templates, norm_relation, soften
from testutil import DATA, EXAMPLES, read_jsonl

from meddata.records import validate_row

KG = DATA / "kg"


def _rows(result) -> list[dict]:
    path = result.out_dir / "jsonl" / "train.jsonl"
    return read_jsonl(path) if path.exists() else []


def _qa(row: dict) -> tuple[str, str, dict]:
    return row["messages"][0]["content"], row["messages"][1]["content"], json.loads(row["meta"]["annotations"])


def test_triples_grouped_across_unsorted_input(build):
    result = build({"name": "kg", "inputs": [{"builder": "kg", "path": str(KG / "drug_facts.tsv")}]})
    rows = _rows(result)
    st = result.steps[0]
    assert st.dropped == {"no_template": 1}  # "pregnancy category"
    assert st.quarantined == 1  # the row without a relation
    q = read_jsonl(result.out_dir / "quarantine.jsonl")[0]
    assert q["locator"] == "line 16" and "'relation'" in q["error"]
    assert st.counters["kg.triples"] == 15 and st.counters["kg.duplicate_tails"] == 1
    groups = {(a["head"].lower(), a["relation"]): (question, answer, a) for question, answer, a in map(_qa, rows)}
    assert len(rows) == len(groups) == 8
    _, answer, ann = groups[("metformin", "side_effect")]
    assert answer.count("nausea") == 1 and ann["n_tails"] == 3 and ann["lines"] == [3, 5, 8, 10]
    assert "diarrhea, nausea and vitamin B12 deficiency" in answer
    # every kept triple's tail is in the answer of its (head, relation) group
    templates = load_templates()
    checked = 0
    with (KG / "drug_facts.tsv").open() as fh:
        for rec in csv.DictReader(fh, delimiter="\t"):
            rel = norm_relation(rec["relation"])
            if rel in templates:
                checked += 1
                assert soften(rec["tail"]) in groups[(rec["head"].lower(), templates[rel].name)][1], rec
    assert checked == 14
    for row in rows:
        assert validate_row(row) == "conversational"
        assert row["meta"]["builder"] == "kg" and row["meta"]["locator"].startswith("line ")


def test_generic_template_for_unknown_relations(build):
    result = build({"name": "kg", "inputs": [
        {"builder": "kg", "path": str(KG / "drug_facts.tsv"), "unknown_relation": "generic"}]})
    qa = [_qa(r)[:2] for r in _rows(result)]
    assert ("What is the pregnancy category of Warfarin?", "The pregnancy category of Warfarin: X.") in qa


def test_jsonl_column_map_and_paraphrases(build, tmp_path):
    inp = {"builder": "kg", "path": str(KG / "conditions.jsonl"), "questions_per_group": 2,
           "columns": {"head": "subject", "relation": "predicate", "tail": "object"}}
    a = _rows(build({"name": "kg", "inputs": [inp]}, out=tmp_path / "a"))
    b = _rows(build({"name": "kg", "inputs": [inp]}, out=tmp_path / "b"))
    assert [r["messages"] for r in a] == [r["messages"] for r in b]  # deterministic paraphrase choice
    assert len({r["id"] for r in a}) == len(a)
    by_group: dict = {}
    for question, answer, ann in map(_qa, a):
        by_group.setdefault((ann["head"], ann["relation"]), []).append((question, answer))
    assert len(by_group) == 6 and all(len(v) == 2 for v in by_group.values())
    for pairs in by_group.values():
        assert pairs[0][0] != pairs[1][0]  # two different questions for one group
    symptoms = by_group[("Asthma", "symptom")]
    assert all("wheezing, shortness of breath and chest tightness" in ans for _, ans in symptoms)
    assert ("Asthma", "medication") in by_group  # "treated by" is a medication alias


def test_chatdoctor_disease_table(build):
    result = build({"name": "kg", "inputs": [
        {"builder": "kg", "path": str(KG / "chatdoctor_diseases_sample.csv"), "layout": "disease_table",
         "max_tails": 0}]})
    rows = _rows(result)
    with (KG / "chatdoctor_diseases_sample.csv").open(newline="") as fh:
        table = list(csv.DictReader(fh))
    expected = {}
    for rec in table:
        for col, rel in (("Symptom", "symptom"), ("TestsAndProcedures", "test"), ("commonMedications", "medication")):
            tails = ast.literal_eval(rec[col])
            if tails:
                expected.setdefault((rec["disease"].lower(), rel), []).extend(tails)
    got = {(a["head"].lower(), a["relation"]): answer for _, answer, a in map(_qa, rows)}
    assert set(got) == set(expected)
    for key, tails in expected.items():
        for tail in tails:
            assert soften(tail.strip()) in got[key], (key, tail)
    for row in rows:
        assert validate_row(row) == "conversational"


def test_max_tails_notes_the_rest(build):
    result = build({"name": "kg", "inputs": [
        {"builder": "kg", "path": str(KG / "chatdoctor_diseases_sample.csv"), "layout": "disease_table",
         "max_tails": 3}]})
    _, answer, ann = _qa(_rows(result)[0])
    assert ann["tails_shown"] == 3 and answer.endswith(f"(and {ann['n_tails'] - 3} more).")


def test_templates_file(tmp_path):
    templates = load_templates()
    assert len(templates["symptom"].questions) >= 3
    assert templates["has_symptom"] is templates["symptom"]
    assert templates["commonmedications"] is templates["medication"]
    bad = tmp_path / "t.yaml"
    bad.write_text("symptom:\n  questions: ['What about {disease}?']\n  answers: ['{tails}']\n")
    with pytest.raises(ValueError, match=r"t.yaml: relation 'symptom'.*disease"):
        load_templates(bad)
    assert join_list(["a"]) == "a" and join_list(["a", "b", "c"]) == "a, b and c"
    assert soften("Sharp chest pain") == "sharp chest pain" and soften("MRI of the head") == "MRI of the head"


def test_example_recipe_builds(build):
    path = EXAMPLES / "recipes" / "kg.yaml"
    result = build(yaml.safe_load(path.read_text()), base_dir=path.parent)
    rows = _rows(result)
    assert result.totals["quarantined"] == 0 and len(rows) == result.totals["out"] > 20
    for row in rows:
        assert validate_row(row) == "conversational"


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@robust_cases
def test_malformed_input(build, tmp_path, fmt, case):
    if fmt == "csv":
        good = (KG / "drug_facts.tsv").read_text().replace("\t", ",").encode()
    else:
        good = (KG / "conditions.jsonl").read_bytes()
    bad = tmp_path / f"triples.{fmt}"
    bad.write_bytes(bad_inputs(good, fmt)[case])
    inp = {"builder": "kg", "path": str(bad)}
    if fmt == "jsonl":
        inp["columns"] = {"head": "subject", "relation": "predicate", "tail": "object"}
    got = check_robust_build(build, {"name": "kg-bad", "inputs": [inp]}, tmp_path / "out", case)
    assert got.get("quarantine"), got
    assert all(e["file"].endswith(bad.name) for e in got["quarantine"])


def test_folder_glob_written_as_one_pattern_and_source_per_file(build, tmp_path):
    """The file keys users already write keep working now that kg reads through source_io:
    ``glob`` as one string, ``source`` defaulting to each file's name, an empty file quarantined."""
    folder = tmp_path / "kg"
    folder.mkdir()
    (folder / "drugs.tsv").write_bytes((KG / "drug_facts.tsv").read_bytes())
    (folder / "empty.tsv").write_bytes(b"")
    (folder / "diseases.csv").write_bytes((KG / "chatdoctor_diseases_sample.csv").read_bytes())
    result = build({"name": "kg", "inputs": [{"builder": "kg", "path": str(folder), "glob": "*.tsv"}]})
    rows = _rows(result)
    assert rows and {r["source"] for r in rows} == {"drugs"}
    assert {r["meta"]["file"].rsplit("/", 1)[-1] for r in rows} == {"drugs.tsv"}
    (entry,) = [q for q in read_jsonl(result.out_dir / "quarantine.jsonl") if q["file"].endswith("empty.tsv")]
    assert entry["error"].startswith("the file is empty") and entry["locator"] == "file"
    assert result.totals["read"] == result.totals["out"] + result.totals["dropped"] + result.totals["quarantined"]
