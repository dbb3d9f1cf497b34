"""Patient-aware split on Synthea notes: no patient on two sides, row shares near the ratios."""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest
from datasets import load_from_disk
from meddata.filters.split import assign_groups
from testutil import DATA, read_jsonl, write_jsonl

from meddata.recipe import RecipeError

NOTES = DATA / "split" / "synthea_notes_subset.jsonl"
ROWS = read_jsonl(NOTES)
PATIENT_OF = {r["doc_id"]: r["patient_id"] for r in ROWS}


def recipe(path, **split) -> dict:
    return {
        "name": "synthea-split",
        "seed": 7,
        "inputs": [{"builder": "table", "path": str(path), "source": "synthea", "phi_status": "raw",
                    "columns": {"id": "doc_id", "text": "text", "patient_id": "patient_id"}}],
        "steps": [{"split": split}],
        "output": {"formats": ["jsonl"]},
    }


def patients_by_split(dataset_dir) -> dict[str, set[str]]:
    dd = load_from_disk(str(dataset_dir))
    return {name: {m["patient_id"] for m in part["meta"]} for name, part in dd.items()}


def test_no_patient_in_two_splits_and_rows_follow_the_ratios(build):
    res = build(recipe(NOTES, ratios={"train": 0.6, "validation": 0.2, "test": 0.2}))
    dd = load_from_disk(str(res.dataset_dir))
    assert set(dd) == {"train", "validation", "test"}
    assert sum(len(p) for p in dd.values()) == len(ROWS)
    assert "__split__" not in dd["train"].column_names
    seen = patients_by_split(res.dataset_dir)
    for a in seen:
        for b in seen:
            if a != b:
                assert not seen[a] & seen[b], f"patient in {a} and {b}"
    assert set().union(*seen.values()) == set(PATIENT_OF.values())
    for name, target in (("train", 0.6), ("validation", 0.2), ("test", 0.2)):
        assert abs(len(dd[name]) / len(ROWS) - target) < 0.05, name
    for part in dd.values():  # every note sits with its own patient
        for row in part:
            assert PATIENT_OF[row["id"].split(":", 1)[1]] == row["meta"]["patient_id"]
    report = res.steps[-1].report
    assert report["groups"] == 25 and report["rows_without_key"] == 0
    assert sum(s["rows"] for s in report["splits"].values()) == len(ROWS)
    assert sum(s["groups"] for s in report["splits"].values()) == 25
    stats_text = res.stats_path.read_text()
    assert not any(pid in stats_text for pid in PATIENT_OF.values())  # counts only, no patient ids
    assert {p.name for p in (res.out_dir / "jsonl").iterdir()} == {"train.jsonl", "validation.jsonl", "test.jsonl"}


def test_seeded_and_reproducible(build, tmp_path):
    a = patients_by_split(build(recipe(NOTES, seed=1), out=tmp_path / "a").dataset_dir)
    b = patients_by_split(build(recipe(NOTES, seed=1), out=tmp_path / "b").dataset_dir)
    assert a == b
    sizes = Counter(r["patient_id"] for r in ROWS)
    ratios = {"train": 0.8, "validation": 0.1, "test": 0.1}
    assert assign_groups(sizes, ratios, 1) == assign_groups(sizes, ratios, 1)
    assert any(assign_groups(sizes, ratios, s) != assign_groups(sizes, ratios, 1) for s in (2, 3, 4))


def test_rows_without_patient_are_grouped_by_id(build, tmp_path):
    rows = [dict(r) for r in ROWS[:200]]
    for r in rows[:40]:
        r["patient_id"] = ""
    src = write_jsonl(tmp_path / "notes.jsonl", rows)
    res = build(recipe(src, ratios={"train": 0.5, "test": 0.5}))
    report = res.steps[-1].report
    assert report["rows_without_key"] == 40
    assert report["groups"] == len({r["patient_id"] for r in rows[40:]}) + 40
    dd = load_from_disk(str(res.dataset_dir))
    assert set(dd) == {"train", "test"} and len(dd["train"]) + len(dd["test"]) == 200
    with_pid = defaultdict(set)
    for name, part in dd.items():
        for m in part["meta"]:
            if m["patient_id"]:
                with_pid[m["patient_id"]].add(name)
    assert all(len(s) == 1 for s in with_pid.values())


def test_split_by_another_key(build, tmp_path):
    rows = [{**r, "site": f"site-{i % 7}"} for i, r in enumerate(ROWS[:140])]
    src = write_jsonl(tmp_path / "notes.jsonl", rows)
    rec = recipe(src, by="source", ratios={"train": 1.0})
    res = build(rec)
    assert res.steps[-1].report["groups"] == 1
    assert list(load_from_disk(str(res.dataset_dir))) == ["train"]


def test_assignment_stratifies_by_rows_not_patients():
    sizes = Counter({"p0": 300, **{f"p{i}": 10 for i in range(1, 71)}})  # one heavy patient, 70 light
    groups = assign_groups(sizes, {"train": 0.8, "validation": 0.1, "test": 0.1}, seed=0)
    rows = Counter()
    for g, name in groups.items():
        rows[name] += sizes[g]
    total = sum(sizes.values())
    assert groups["p0"] == "train"
    for name, target in (("train", 0.8), ("validation", 0.1), ("test", 0.1)):
        assert abs(rows[name] / total - target) <= 0.01


@pytest.mark.parametrize("ratios,message", [
    ({"train": 0.9, "test": 0.2}, "add up to 1"),
    ({"train": 1.2, "test": -0.2}, "must not be negative"),
    ({}, "at least one split"),
])
def test_bad_ratios_are_recipe_errors(build, ratios, message):
    with pytest.raises(RecipeError) as err:
        build(recipe(NOTES, ratios=ratios))
    assert "steps[0] 'split'" in str(err.value) and message in str(err.value)


def test_unknown_key_is_a_clear_error(build):
    with pytest.raises(ValueError, match="no column 'ward'"):
        build(recipe(NOTES, by="ward"))
