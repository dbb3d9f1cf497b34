"""The mix step: weights, counts, caps, seeded up/down-sampling, stages, drop accounting."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest
from datasets import Dataset
from publish_testkit import CHATDOCTOR, MEDQUAD, OPENSTAX
from testutil import read_jsonl

from meddata.recipe import RecipeError
from meddata.records import SPLIT_COLUMN
from meddata.steps import StepContext

INPUTS = [MEDQUAD, CHATDOCTOR]  # 60 and 40 rows
DUP = re.compile(r"^(.*)#dup(\d+)$")


def _rows(result):
    return read_jsonl(result.out_dir / "jsonl" / "train.jsonl")


def _mix_step(result):
    return next(s for s in result.steps if s.name == "mix")


def _drops(result):
    st = _mix_step(result)
    path = result.out_dir / "dropped" / f"{st.index:02d}-mix.jsonl"
    return read_jsonl(path) if path.exists() else []


def test_weights_with_total_upsamples_and_downsamples(build):
    result = build({"name": "m", "inputs": INPUTS,
                    "steps": [{"mix": {"weights": {"medquad": 1, "chatdoctor": 3}, "total": 100}}]})
    rows = _rows(result)
    assert Counter(r["source"] for r in rows) == {"medquad": 25, "chatdoctor": 75}
    ids = [r["id"] for r in rows]
    assert len(set(ids)) == len(ids)
    # chatdoctor has 40 rows for 75 places: every row once, 35 of them twice, never three times
    dups = [DUP.match(i) for i in ids if DUP.match(i)]
    assert len(dups) == 35 and {m.group(2) for m in dups} == {"1"}
    originals = set(ids)
    assert all(m.group(1) in originals for m in dups)
    by_id = {r["id"]: r for r in rows}
    assert all(by_id[m.group(0)]["messages"] == by_id[m.group(1)]["messages"] for m in dups)
    # medquad: 25 of 60 kept, 35 dropped with the reason, nothing lost
    drops = _drops(result)
    assert len(drops) == 35 and {d["reason"] for d in drops} == {"mix_downsampled"}
    assert {d["source"] for d in drops} == {"medquad"}
    st = _mix_step(result)
    assert (st.rows_in, st.rows_out, st.created, st.dropped) == (100, 100, 35, {"mix_downsampled": 35})
    report = st.report["stages"]["default"]
    assert report["total"] == 100
    assert report["sources"]["chatdoctor"] == {"available": 40, "weight": 3.0, "count": None, "cap": None,
                                               "rows": 75, "unique_rows": 40, "share": 0.75}
    assert report["sources"]["medquad"]["unique_rows"] == 25


def test_weights_without_total_take_the_largest_mix_without_repeats(build):
    result = build({"name": "m", "inputs": INPUTS, "steps": [{"mix": {"weights": {"medquad": 0.5, "chatdoctor": 0.5}}}]})
    rows = _rows(result)
    assert Counter(r["source"] for r in rows) == {"medquad": 40, "chatdoctor": 40}
    assert not any("#dup" in r["id"] for r in rows)
    assert _mix_step(result).created == 0 and len(_drops(result)) == 20


def test_counts_with_caps_and_wildcard(build):
    result = build({"name": "m", "inputs": INPUTS, "steps": [{"mix": {
        "counts": {"medquad": 100, "chatdoctor": 10}, "caps": {"medquad": 70, "*": 8}}}]})
    got = Counter(r["source"] for r in _rows(result))
    assert got == {"medquad": 70, "chatdoctor": 8}
    assert sum("#dup" in r["id"] for r in _rows(result)) == 10


def test_upsample_false_never_repeats(build):
    result = build({"name": "m", "inputs": INPUTS, "steps": [{"mix": {
        "counts": {"medquad": 10, "chatdoctor": 500}, "upsample": False}}]})
    assert Counter(r["source"] for r in _rows(result)) == {"medquad": 10, "chatdoctor": 40}
    assert _mix_step(result).created == 0


def test_sampling_is_seeded(build, tmp_path):
    steps = [{"mix": {"counts": {"medquad": 20, "chatdoctor": 50}}}]
    a = {r["id"] for r in _rows(build({"name": "m", "inputs": INPUTS, "steps": steps}, out=tmp_path / "a"))}
    b = {r["id"] for r in _rows(build({"name": "m", "inputs": INPUTS, "steps": steps}, out=tmp_path / "b"))}
    c = {r["id"] for r in _rows(build({"name": "m", "seed": 7, "inputs": INPUTS, "steps": steps}, out=tmp_path / "c"))}
    assert a == b
    assert a != c and len(a) == len(c) == 70


def test_unlisted_sources_keep_or_drop(build, tmp_path):
    inputs = [*INPUTS, OPENSTAX]
    kept = build({"name": "m", "inputs": inputs, "steps": [{"mix": {"counts": {"medquad": 5, "chatdoctor": 5}}}]},
                 out=tmp_path / "keep")
    assert Counter(r["source"] for r in _rows(kept)) == {"medquad": 5, "chatdoctor": 5, "openstax": 30}
    assert _mix_step(kept).report["passthrough"] == {"source:openstax": 30}
    dropped = build({"name": "m", "inputs": inputs, "steps": [{"mix": {
        "counts": {"medquad": 5, "chatdoctor": 5}, "unlisted": "drop"}}]}, out=tmp_path / "drop")
    assert Counter(r["source"] for r in _rows(dropped)) == {"medquad": 5, "chatdoctor": 5}
    assert _mix_step(dropped).dropped == {"mix_downsampled": 90, "mix_unlisted_source": 30}


def test_stages_label_rows_and_sample_independently(build):
    result = build({"name": "m", "inputs": INPUTS, "steps": [{"mix": {"stages": {
        "stage1": {"weights": {"medquad": 0.5, "chatdoctor": 0.5}, "total": 60},
        "stage2": {"counts": {"chatdoctor": 40}},
    }}}]})
    rows = _rows(result)
    stages = Counter((json.loads(r["meta"]["annotations"])["stage"], r["source"]) for r in rows)
    assert stages == {("stage1", "medquad"): 30, ("stage1", "chatdoctor"): 30, ("stage2", "chatdoctor"): 40}
    ids = [r["id"] for r in rows]
    assert len(set(ids)) == len(ids) == 100
    # the 30 chatdoctor rows of stage 1 are all in stage 2 too: 30 copies
    assert sum("#dup" in i for i in ids) == 30
    st = _mix_step(result)
    assert st.dropped == {"mix_downsampled": 30} and st.created == 30
    assert set(st.report["stages"]) == {"stage1", "stage2"} and st.report["mode"] == "stages"


def test_only_the_listed_splits_are_mixed(tmp_path):
    from meddata.filters.mix import Mix

    ds = Dataset.from_list([
        {"id": f"{src}-{i}", "source": src, "meta": {"phi_status": "not_applicable", "annotations": "{}"},
         SPLIT_COLUMN: "train" if i < 8 else "test"}
        for src in ("a", "b") for i in range(10)
    ])
    result = Mix({"counts": {"a": 4, "b": 12}}).apply(ds, StepContext(step_dir=tmp_path))
    kept = result.kept.to_list()
    test_rows = [r for r in kept if r[SPLIT_COLUMN] == "test"]
    assert sorted(r["id"] for r in test_rows) == ["a-8", "a-9", "b-8", "b-9"]
    train = Counter(r["source"] for r in kept if r[SPLIT_COLUMN] == "train")
    assert train == {"a": 4, "b": 12}
    assert result.report["passthrough"] == {"split:test": 4}
    assert len(result.dropped) == 4


def test_unknown_source_names_what_exists(build):
    with pytest.raises(RecipeError, match=r"no row has source 'medqad'.*chatdoctor, medquad"):
        build({"name": "m", "inputs": INPUTS, "steps": [{"mix": {"weights": {"medqad": 1, "chatdoctor": 1}}}]})


@pytest.mark.parametrize("params, message", [
    ({"weights": {"a": 1}, "counts": {"a": 1}}, "exactly one of 'weights'"),
    ({}, "exactly one of 'weights'"),
    ({"counts": {"a": 5}, "total": 10}, "'total' goes with 'weights'"),
    ({"weights": {"a": 0}}, "positive sum"),
    ({"counts": {"a": -1}}, ">= 0"),
    ({"stages": {"s1": {"counts": {"a": 1}}}, "weights": {"a": 1}}, "inside each stage"),
    ({"stages": {"s 1": {"counts": {"a": 1}}}}, "stage names"),
])
def test_bad_parameters_fail_when_the_recipe_loads(params, message):
    from meddata import recipe

    with pytest.raises(RecipeError, match=re.escape(message)) as err:
        recipe.from_dict({"name": "m", "inputs": [MEDQUAD], "steps": [{"mix": params}]}, source="r.yaml")
    assert "r.yaml: steps[0] 'mix'" in str(err.value)
