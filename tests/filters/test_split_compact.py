"""The compact split (Arrow keys, numpy sizes, one code per row) assigns every row exactly as
the former all-Python implementation did. That implementation is kept below, verbatim, as the
oracle (``old_apply``), and both run on real rows (Synthea notes with patient ids, MIMIC-style
notes keyed by an integer SUBJECT_ID, MTSamples by specialty, MTS-Dialog and MedQuAD rows with
no patient id) and on generated edge cases."""

from __future__ import annotations

import csv
import json
import logging
import pickle
import random
import sys
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest
from datasets import Dataset, Features, Value, load_from_disk
from former_split import old_apply, old_assign_groups
from meddata.filters.split import Split, assign_groups
from ray_cluster import two_node_cluster
from testutil import DATA, SHARED, read_jsonl

from meddata.records import META_FEATURES, SPLIT_COLUMN
from meddata.steps import StepContext

FEATURES = Features({"id": Value("string"), "source": Value("string"), "meta": META_FEATURES})


# -- helpers ----------------------------------------------------------------------------------
def new_apply(dataset: Dataset, tmp_path: Path, *, executor: str = "local", seed: int = 0, **params):
    step = Split(params)
    ctx = StepContext(step_dir=tmp_path, seed=seed, executor=executor)
    result = step.apply(dataset, ctx)
    return result, step.take_stats()


def assert_same(dataset: Dataset, tmp_path: Path, seed: int = 0, **params) -> tuple[list[str], dict]:
    """Old and new agree on every row's split, on the report and on the counters."""
    labels, report = old_apply(dataset, seed=seed, **params)
    result, stats = new_apply(dataset, tmp_path, seed=seed, **params)
    new_labels = result.new_columns[SPLIT_COLUMN]
    assert len(new_labels) == len(labels)
    mismatched = sum(a != b for a, b in zip(new_labels, labels))
    assert mismatched == 0, f"{mismatched} of {len(labels)} rows in another split"
    assert result.report == report
    assert stats["split.groups"] == report["groups"]
    assert stats["split.rows_without_key"] == report["rows_without_key"]
    return labels, report


def canonical(rows: list[dict]) -> Dataset:
    """Rows in the canonical schema: ``id``, ``source`` and a ``meta`` struct."""
    meta_keys = list(META_FEATURES)
    return Dataset.from_dict({
        "id": [r["id"] for r in rows],
        "source": [r.get("source", "test") for r in rows],
        "meta": [None if r.get("meta_null") else {k: r.get(k) for k in meta_keys} for r in rows],
    }, features=FEATURES)


def _csv(path: Path) -> list[dict]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def synthea_rows() -> list[dict]:
    full = SHARED / "synthea" / "synthea_notes.jsonl"
    path = full if full.exists() else DATA / "split" / "synthea_notes_subset.jsonl"
    return [{"id": f"synthea:{r['doc_id']}", "patient_id": r["patient_id"]} for r in read_jsonl(path)]


def dialogue_rows() -> list[dict]:
    """MTS-Dialog: no patient ids, so each row is its own group (the QA-like case)."""
    rows = _csv(DATA / "dialogue" / "mts_dialog_sample.csv")
    full = SHARED / "mts-dialog" / "MTS-Dialog-TrainingSet.csv"
    if full.exists():
        rows += _csv(full)
    return [{"id": f"mts:{i}:{r['ID']}", "patient_id": "", "encounter_id": r["section_header"]}
            for i, r in enumerate(rows)]


def medquad_rows() -> list[dict]:
    full = SHARED / "medquad" / "medquad.jsonl"
    if full.exists():
        rows = read_jsonl(full)
        return [{"id": f"medquad:{r['doc_id']}:{i}", "source": r["source"]} for i, r in enumerate(rows)]
    rows = json.loads((DATA / "qa" / "chatdoctor5k_sample.json").read_text())
    return [{"id": f"chatdoctor:{i}", "source": "chatdoctor"} for i in range(len(rows))]


def mtsamples_dataset() -> Dataset:
    """MTSamples keyed by the specialty column (values with leading spaces, '/' and '-')."""
    full = SHARED / "mtsamples" / "mtsamples.jsonl"
    rows = read_jsonl(full if full.exists() else DATA / "ehr" / "mtsamples_sample.jsonl")
    return Dataset.from_dict({"id": [f"mts:{i}" for i in range(len(rows))],
                              "specialty": [r.get("medical_specialty") for r in rows]})


def mimic_dataset() -> Dataset:
    """MIMIC-III-style NOTEEVENTS: SUBJECT_ID as an integer column, several notes per subject."""
    rows = _csv(DATA / "ehr" / "NOTEEVENTS_sample.csv") * 40
    return Dataset.from_dict({"id": [f"mimic:{i}" for i in range(len(rows))],
                              "subject": [int(r["SUBJECT_ID"]) for r in rows]})


# -- real data --------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 7, 123])
def test_synthea_notes_by_patient(tmp_path, seed):
    ds = canonical(synthea_rows())
    _, report = assert_same(ds, tmp_path, seed=seed, ratios={"train": 0.6, "validation": 0.2, "test": 0.2})
    assert report["rows_without_key"] == 0 and report["groups"] < len(ds)


def test_synthea_notes_with_some_patient_ids_missing(tmp_path):
    rows = synthea_rows()
    for r in rows[::3]:
        r["patient_id"] = random.Random(len(r["id"])).choice(["", " ", "\t\n", None])
    _, report = assert_same(canonical(rows), tmp_path, seed=3)
    assert report["rows_without_key"] == len(rows[::3])


def test_dialogue_and_qa_rows_without_patient_ids_fall_back_to_their_ids(tmp_path):
    ds = canonical(dialogue_rows() + medquad_rows())
    _, report = assert_same(ds, tmp_path, seed=11, ratios={"train": 0.9, "test": 0.1})
    assert report["rows_without_key"] == len(ds) == report["groups"]


def test_other_keys_on_real_data(tmp_path):
    qa = canonical(medquad_rows())
    assert_same(qa, tmp_path, by="source", ratios={"train": 0.5, "validation": 0.25, "test": 0.25})
    assert_same(canonical(dialogue_rows()), tmp_path, by="meta.encounter_id", seed=2)
    assert_same(mtsamples_dataset(), tmp_path, by="specialty", seed=5)
    mimic = mimic_dataset()
    _, report = assert_same(mimic, tmp_path, by="subject", seed=1)  # int keys, "subject\x1f9001" as str() writes
    assert report["groups"] == len(set(mimic["subject"])) > 1


# -- edge cases -------------------------------------------------------------------------------
NON_ASCII = ["é", "e\u0301", "z", "Z", "ß", "日本", "\U0001f600", "\uffff", "\u00a0x", "a\x1fb", "10", "9", "010",
             "-1", "Ω", "ı", "İ", "ǅ", "x" * 300]


@pytest.mark.parametrize("seed", range(4))
def test_non_ascii_and_int_like_keys_sort_as_python_does(tmp_path, seed):
    rnd = random.Random(seed)
    rows = [{"id": f"r{i}", "patient_id": rnd.choice(NON_ASCII)} for i in range(400)]
    assert_same(canonical(rows), tmp_path, seed=seed)


def test_whitespace_is_what_python_strips(tmp_path):
    """Every character Python's str.strip() removes makes a value missing, and only those
    (U+001C..U+001F and U+0085 are; U+200B and U+FEFF are not)."""
    spaces = [chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()]
    near = ["\u200b", "\ufeff", "\u180e", "_", "\x00", "\x1b", "\x7f"]
    values = spaces + [s * 3 for s in spaces] + ["".join(spaces)] + near + [" a ", "\u3000b"]
    rows = [{"id": f"r{i}", "patient_id": v} for i, v in enumerate(values)]
    _, report = assert_same(canonical(rows), tmp_path)
    assert report["rows_without_key"] == 2 * len(spaces) + 1


def test_mixed_present_and_missing_keys_and_null_meta(tmp_path):
    rows = []
    for i in range(600):
        kind = i % 5
        rows.append({"id": f"id-{i}", "patient_id": None if kind == 0 else "" if kind == 1 else f"p{i % 37}",
                     "meta_null": kind == 2})
    _, report = assert_same(canonical(rows), tmp_path, seed=9)
    assert report["rows_without_key"] == 360


def test_one_group_many_equal_sizes_and_zero_ratios(tmp_path):
    one = canonical([{"id": f"r{i}", "patient_id": "p"} for i in range(50)])
    labels, report = assert_same(one, tmp_path)
    assert set(labels) == {"train"} and report["groups"] == 1
    equal = canonical([{"id": f"r{i}", "patient_id": f"p{i % 200}"} for i in range(1000)])
    for seed in range(5):
        assert_same(equal, tmp_path, seed=seed)
    for ratios in ({"train": 0.7, "validation": 0.0, "test": 0.3}, {"test": 1.0, "train": 0.0},
                   {"a": 0.25, "b": 0.25, "c": 0.25, "d": 0.25}, {"train": 1.0}):
        assert_same(equal, tmp_path, seed=4, ratios=ratios)


def test_typed_columns_are_written_as_str_writes_them(tmp_path):
    n = 300
    ds = Dataset.from_dict({
        "id": [f"r{i}" for i in range(n)],
        "score": [None if i % 9 == 0 else (i % 7) / 4 for i in range(n)],
        "flag": [None if i % 11 == 0 else i % 3 == 0 for i in range(n)],
        "big": [(i % 5) * 10**15 - 7 for i in range(n)],
        "tags": [[f"t{i % 4}"] if i % 6 else [] for i in range(n)],
        "wide": pa.array([f"w{i % 13}" for i in range(n)], pa.large_string()),
    })
    for by in ("score", "flag", "big", "tags", "wide"):
        assert_same(ds, tmp_path, by=by, seed=2)


def test_no_rows(tmp_path):
    labels, report = assert_same(canonical([]), tmp_path)
    assert labels == [] and report["groups"] == 0


def test_assign_groups_matches_the_former_assignment():
    rnd = random.Random(0)
    for trial in range(30):
        sizes = Counter({f"g{rnd.random()}": rnd.choice([1, 1, 2, 3, 50]) for _ in range(rnd.randint(0, 300))})
        ratios = rnd.choice([{"train": 0.8, "validation": 0.1, "test": 0.1}, {"a": 0.5, "b": 0.0, "c": 0.5}])
        assert assign_groups(sizes, ratios, trial) == old_assign_groups(sizes, ratios, trial)


# -- errors, reports and logs never carry a key -------------------------------------------------
def test_neither_key_nor_fallback_is_the_same_one_line_error_without_values(tmp_path):
    ds = Dataset.from_dict({"id": ["a1", "  "], "ward": ["PID-4471", " "]})
    with pytest.raises(ValueError) as old:
        old_apply(ds, by="ward")
    with pytest.raises(ValueError) as new:
        new_apply(ds, tmp_path, by="ward")
    assert str(new.value) == str(old.value) == "split: a row has neither 'ward' nor 'id'"
    for bad in ({"by": "nowhere"}, {"by": "meta.nowhere"}, {"fallback": "row"}):
        with pytest.raises(ValueError) as old:
            old_apply(ds, **bad)
        with pytest.raises(ValueError) as new:
            new_apply(ds, tmp_path, **bad)
        assert str(new.value) == str(old.value)


def test_report_counters_and_logs_hold_counts_only(tmp_path, caplog):
    rows = [{"id": f"note-{i}", "patient_id": f"PATIENT-{i % 17:04d}" if i % 4 else ""} for i in range(200)]
    caplog.set_level(logging.DEBUG)
    result, stats = new_apply(canonical(rows), tmp_path, seed=1)
    text = json.dumps(result.report) + json.dumps(stats) + caplog.text
    assert "PATIENT-" not in text and "note-" not in text
    assert sum(s["rows"] for s in result.report["splits"].values()) == 200


def test_labels_are_shared_strings_not_one_object_per_row(tmp_path):
    ds = canonical([{"id": f"r{i}", "patient_id": ""} for i in range(5000)])
    result, _ = new_apply(ds, tmp_path)
    labels = result.new_columns[SPLIT_COLUMN]
    assert len(labels) == 5000 and len({id(v) for v in labels}) == 3


# -- Ray: the groupby as tasks on a real two-node cluster ---------------------------------------
@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """A head and a second node on 127.0.0.1, one CPU each, joined by this process."""
    ray = pytest.importorskip("ray")
    with two_node_cluster(tmp_path_factory.mktemp("ray")):
        yield ray


@pytest.fixture(scope="module")
def on_disk(tmp_path_factory) -> Dataset:
    """60k rows, memory-mapped from Arrow files as the runner's checkpoints are: Synthea patients
    repeated (with every fifth id left empty) plus rows that are their own group."""
    base = synthea_rows()
    rows = []
    for i in range(60_000):
        r = base[i % len(base)]
        rows.append({"id": f"{r['id']}:{i}", "patient_id": "" if i % 5 == 0 else f"{r['patient_id']}-{i % 3}"})
    path = tmp_path_factory.mktemp("split-input") / "ds"
    canonical(rows).save_to_disk(str(path))
    return load_from_disk(str(path))


def test_the_dataset_travels_to_tasks_as_file_paths(on_disk):
    assert on_disk.cache_files and len(pickle.dumps(on_disk)) < 10_000


def test_ray_groupby_gives_the_local_labels(ray_cluster, on_disk, tmp_path):
    ratios = {"train": 0.7, "validation": 0.2, "test": 0.1}
    local, local_stats = new_apply(on_disk, tmp_path, seed=5, ratios=ratios)
    remote, remote_stats = new_apply(on_disk, tmp_path, executor="ray", seed=5, ratios=ratios)
    assert remote_stats["split.ray_tasks"] == 3  # ran as Ray tasks in worker processes (60k rows / 25k per task)
    assert list(remote.new_columns[SPLIT_COLUMN]) == list(local.new_columns[SPLIT_COLUMN])
    assert remote.report == local.report
    assert {k: v for k, v in remote_stats.items() if k != "split.ray_tasks"} == local_stats
    labels, report = old_apply(on_disk, ratios=ratios, seed=5)
    assert list(remote.new_columns[SPLIT_COLUMN]) == labels and remote.report == report


def test_ray_groupby_from_inside_a_ray_task(ray_cluster, on_disk, tmp_path):
    """The caller may itself be a Ray task (the engine's driver on a cluster): nested tasks."""
    step = Split({"ratios": {"train": 0.5, "test": 0.5}})
    ctx = StepContext(step_dir=tmp_path, seed=2, executor="ray")

    def run_in_a_task(dataset: Dataset, ctx: StepContext):  # a local function: Ray ships it by value
        return step.apply(dataset, ctx)

    nested = ray_cluster.get(ray_cluster.remote(run_in_a_task).remote(on_disk, ctx))
    labels, report = old_apply(on_disk, ratios={"train": 0.5, "test": 0.5}, seed=2)
    assert list(nested.new_columns[SPLIT_COLUMN]) == labels and nested.report == report


def test_ray_error_is_the_one_line_message(ray_cluster, tmp_path):
    ds = Dataset.from_dict({"id": [f"r{i}" for i in range(30_000)] + [" "], "ward": ["W-1"] * 30_000 + [""]})
    with pytest.raises(ValueError) as err:
        new_apply(ds, tmp_path, executor="ray", by="ward")
    assert str(err.value) == "split: a row has neither 'ward' nor 'id'"


def test_names_with_the_separator_merge_keys_as_before(tmp_path):
    """A column name that contains U+001F can make a key of one source equal a key of the
    other ("k" + "v\\x1fz" and "k\\x1fv" + "z"): the former code merged such rows into one group."""
    ds = Dataset.from_dict({"id": [f"r{i}" for i in range(8)],
                            "k": ["v\x1fz", "", "a", "", "v\x1fz", "b", "", "\u3000"],
                            "k\x1fv": ["q", "z", "x", "z", "y", "w", "c", "a"]})
    _, report = assert_same(ds, tmp_path, by="k", fallback="k\x1fv", seed=1)
    assert report["groups"] == 5


def test_more_rows_than_one_comparison_slice_and_a_row_selection(tmp_path):
    n = 100_000  # both sources hold more rows than one slice of KEY_BATCH neighbours
    ds = Dataset.from_dict({"id": [f"r{i}" for i in range(n)],
                            "pid": [f"p{(i * 7919) % 30_000}" if i % 3 else " " for i in range(n)]})
    assert_same(ds, tmp_path, by="pid", seed=8)
    assert_same(ds.shuffle(seed=1).select(range(0, n, 2)), tmp_path, by="pid", seed=8)  # an indices mapping
