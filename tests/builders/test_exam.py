"""The exam builder: the four formats as eval items and as instructions, the example recipe,
and malformed input."""

from __future__ import annotations

import yaml
from badinput import bad_inputs, check_robust_build, robust_cases
from testutil import DATA, EXAMPLES, read_jsonl

from meddata.exams import load_exam
from meddata.records import validate_row

EXAM = DATA / "exam"


def _rows(result) -> list[dict]:
    return read_jsonl(result.out_dir / "jsonl" / "train.jsonl")


def test_eval_items_match_the_parser(build):
    result = build({"name": "exam-eval", "inputs": [{"builder": "exam", "path": str(EXAM), "licence": "MIT"}]})
    rows = _rows(result)
    expected = [i for f in sorted(EXAM.iterdir()) if f.suffix in (".jsonl", ".json", ".csv")
                for i in load_exam(f)]
    # the same MedMCQA item sits in two layouts: the second copy's id gets a locator suffix
    assert [r["id"].split("@")[0] for r in rows] == [i.id for i in expected]
    assert len({r["id"] for r in rows}) == len(rows)
    for row, item in zip(rows, expected, strict=True):
        assert validate_row(row) == "exam"
        assert row["question"] == item.question and row["answer"] == item.answer
        assert [(o["label"], o["text"]) for o in row.get("options") or []] == list(item.options)
        assert row["meta"]["builder"] == "exam" and row["meta"]["licence"] == "MIT"
        assert row["meta"]["file"].endswith(item.locator.split(" ")[0])
    pubmed = next(r for r in rows if r["source"] == "pubmedqa")
    assert pubmed["context"] and pubmed["explanation"] and "options" not in pubmed
    assert {r["subject"] for r in rows if r["source"] == "mmlu"} == {"anatomy", "clinical_knowledge"}


def test_instruction_rows(build):
    result = build({"name": "exam-instruct", "inputs": [
        {"builder": "exam", "path": str(EXAM / "medqa_usmle_sample.jsonl"), "as": "instruction"},
        {"builder": "exam", "path": str(EXAM / "ori_pqal_sample.json"), "as": "instruction", "explanation": False},
    ]})
    rows = _rows(result)
    items = load_exam(EXAM / "medqa_usmle_sample.jsonl") + load_exam(EXAM / "ori_pqal_sample.json")
    assert len(rows) == len(items)
    for row, item in zip(rows, items, strict=True):
        assert validate_row(row) == "conversational"
        user, assistant = (m["content"] for m in row["messages"])
        assert item.question in user
        if item.options:
            assert assistant == f"{item.answer}. {item.answer_text}"
            for label, text in item.options:
                assert f"\n{label}. {text}" in user
        else:
            assert assistant == f"{item.answer.capitalize()}." and item.context.split("\n")[0] in user


def test_subject_filter_drops_with_reason(build):
    result = build({"name": "exam-subjects", "inputs": [
        {"builder": "exam", "path": str(EXAM), "format": "mmlu", "subjects": ["anatomy"]}]})
    assert result.totals["out"] == 5 and result.steps[0].dropped == {"other_subject": 12}


def test_example_recipe_builds(build):
    path = EXAMPLES / "recipes" / "exam.yaml"
    result = build(yaml.safe_load(path.read_text()), base_dir=path.parent)
    rows = _rows(result)
    assert len(rows) == result.totals["out"] > 20 and result.totals["quarantined"] == 0
    for row in rows:
        assert validate_row(row) == "conversational"
    assert {r["source"] for r in rows} == {"medqa", "medmcqa", "mmlu", "pubmedqa"}


@robust_cases
def test_malformed_input(build, tmp_path, case):
    good = (EXAM / "medqa_usmle_sample.jsonl").read_bytes()
    bad = tmp_path / "in" / "medqa_bad.jsonl"
    bad.parent.mkdir()
    bad.write_bytes(bad_inputs(good, "jsonl")[case])
    mmlu = tmp_path / "in" / "anatomy_test.csv"
    mmlu.write_bytes(bad_inputs((EXAM / "anatomy_dev.csv").read_bytes(), "csv")[case])
    got = check_robust_build(build, {"name": "exam-bad", "inputs": [
        {"builder": "exam", "path": str(tmp_path / "in")}]}, tmp_path / "out", case)
    assert "quarantine" in got, got  # this builder never needs to fail: everything is quarantined
    errors = " | ".join(e["error"] for e in got["quarantine"])
    files = {e["file"].rsplit("/", 1)[-1] for e in got["quarantine"]}
    assert files == {"medqa_bad.jsonl", "anatomy_test.csv"}, errors
    if case == "empty":
        assert errors.count("the file is empty") == 2
    if case == "latin1":
        assert "not valid utf-8" in errors
    if case == "huge_line":
        assert "over the" in errors or "columns" in errors
