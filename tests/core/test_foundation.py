"""The foundation: recipes, registry, local engine, accounting, reuse — on real sample data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import datasets
import pytest
from testutil import EXAMPLES, read_jsonl

from meddata import pipeline, recipe, registry
from meddata.recipe import RecipeError
from meddata.records import RecordError, validate_row
from meddata.yamlfile import read_yaml

QUICKSTART = EXAMPLES / "recipes" / "quickstart.yaml"
MEDQUAD = EXAMPLES / "data" / "medquad_sample.jsonl"


def _qa_recipe(path: Path, steps: list | None = None) -> dict:
    return {
        "name": "t",
        "inputs": [{"builder": "table", "path": str(path), "source": "medquad",
                    "columns": {"user": "question", "assistant": "answer"}}],
        "steps": steps if steps is not None else ["normalize_text", {"length_filter": {"min_chars": 80}}],
    }


def test_quickstart_builds_trl_messages(tmp_path):
    rec = recipe.load(QUICKSTART)
    result = pipeline.run(rec, tmp_path / "qs")
    dd = datasets.load_from_disk(str(result.dataset_dir))
    assert list(dd) == ["train"]
    train = dd["train"]
    assert set(train.column_names) == {"id", "source", "messages", "meta"}
    assert len(train) == result.totals["out"] > 400
    for row in train.select(range(50)):
        assert validate_row(row) == "conversational"
        assert [m["role"] for m in row["messages"]] == ["user", "assistant"]
    assert len(set(train["id"])) == len(train)

    stats = json.loads(result.stats_path.read_text())
    t = stats["totals"]
    assert t["read"] == t["out"] + t["dropped"] + t["quarantined"] - t["created"]
    assert t["read"] == 500  # 300 MedQuAD + 200 ChatDoctor rows in examples/data
    dropped_rows = sum(len(read_jsonl(p)) for p in (result.out_dir / "dropped").glob("*.jsonl"))
    assert dropped_rows == t["dropped"]
    for s in stats["steps"][2:]:
        assert s["rows_in"] - sum(s["dropped"].values()) - s["quarantined"] + s["created"] == s["rows_out"]
    # formats and exports the recipe asked for
    assert len(read_jsonl(result.out_dir / "jsonl" / "train.jsonl")) == t["out"]
    assert (result.out_dir / "parquet" / "train.parquet").exists()
    alpaca = read_jsonl(result.out_dir / "exports" / "alpaca-train.jsonl")
    assert alpaca[0]["instruction"] and alpaca[0]["output"]
    sharegpt = read_jsonl(result.out_dir / "exports" / "sharegpt-train.jsonl")
    assert [t["from"] for t in sharegpt[0]["conversations"]] == ["human", "gpt"]


def test_rerun_reuses_finished_steps(tmp_path, capsys, caplog):
    rec = recipe.load(QUICKSTART)
    first = pipeline.run(rec, tmp_path / "qs")
    assert not any(s.reused for s in first.steps)
    caplog.set_level("INFO", logger="meddata")
    second = pipeline.run(recipe.load(QUICKSTART), tmp_path / "qs")
    assert all(s.reused for s in second.steps)
    assert second.totals == first.totals
    assert "reused step 3 length_filter" in caplog.text
    # a changed parameter re-runs that step and the ones after it, not the ones before
    data = read_yaml(QUICKSTART)
    data["steps"][1] = {"length_filter": {"min_chars": 200}}
    third = pipeline.run(recipe.from_dict(data, base_dir=QUICKSTART.parent), tmp_path / "qs")
    assert [s.reused for s in third.steps] == [True, True, True, False]
    assert third.totals["out"] < first.totals["out"]


def test_misspelt_step_says_did_you_mean(tmp_path):
    with pytest.raises(RecipeError) as err:
        recipe.from_dict(_qa_recipe(MEDQUAD, ["normalise_text"]), source="r.yaml")
    msg = str(err.value)
    assert "r.yaml: steps[0]" in msg and "'normalise_text'" in msg and "did you mean 'normalize_text'" in msg


def test_wrong_parameter_type_names_step_and_parameter():
    with pytest.raises(RecipeError) as err:
        recipe.from_dict(_qa_recipe(MEDQUAD, [{"length_filter": {"min_chars": "many"}}]), source="r.yaml")
    msg = str(err.value)
    assert "r.yaml: steps[0] 'length_filter': parameter 'min_chars'" in msg
    assert "integer" in msg and "many" not in msg.split("parameter")[0]


def test_unknown_parameter_is_an_error():
    with pytest.raises(RecipeError, match=r"steps\[0\] 'length_filter': unknown parameter 'min_char'; did you mean 'min_chars'\?"):
        recipe.from_dict(_qa_recipe(MEDQUAD, [{"length_filter": {"min_char": 3}}]), source="r.yaml")


def test_missing_input_file_names_the_file(tmp_path):
    with pytest.raises(RecipeError) as err:
        recipe.from_dict(_qa_recipe(tmp_path / "nope.jsonl"), source="r.yaml")
    msg = str(err.value)
    assert "r.yaml: inputs[0] 'table': parameter 'path'" in msg and "nope.jsonl" in msg


def test_builder_in_steps_and_step_in_inputs_are_errors():
    with pytest.raises(RecipeError, match="is a builder; list it under 'inputs'"):
        recipe.from_dict(_qa_recipe(MEDQUAD, ["table"]))
    bad = _qa_recipe(MEDQUAD)
    bad["inputs"][0]["builder"] = "normalize_text"
    with pytest.raises(RecipeError, match="not a builder"):
        recipe.from_dict(bad)


def test_malformed_lines_are_quarantined_and_counts_add_up(tmp_path, build):
    lines = MEDQUAD.read_text(encoding="utf-8").splitlines()[:40]
    lines[5] = lines[5][: len(lines[5]) // 2]  # truncated JSON
    lines[17] = '["not", "an", "object"]'
    lines[30] = json.dumps({"qid": "x", "question": "What is asthma?"})  # no answer field
    src = tmp_path / "qa.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = build(_qa_recipe(src, ["normalize_text"]))
    quarantine = read_jsonl(result.out_dir / "quarantine.jsonl")
    assert [q["locator"] for q in quarantine] == ["line 6", "line 18", "line 31"]
    assert all(q["file"].endswith("qa.jsonl") for q in quarantine)
    assert "invalid JSON" in quarantine[0]["error"]
    assert "expected a JSON object" in quarantine[1]["error"]
    assert "'answer' is missing" in quarantine[2]["error"]
    t = result.totals
    assert (t["read"], t["out"], t["quarantined"]) == (40, 37, 3)


def test_latin1_bytes_are_quarantined_with_a_fix(tmp_path, build):
    src = tmp_path / "qa.jsonl"
    good = MEDQUAD.read_text(encoding="utf-8").splitlines()[:3]
    bad = json.dumps({"qid": "q", "question": "Qu'est-ce que l'anémie ?", "answer": "Une maladie du sang."},
                     ensure_ascii=False).encode("latin-1")
    src.write_bytes(b"\n".join([good[0].encode(), bad, good[1].encode(), good[2].encode()]) + b"\n")
    result = build(_qa_recipe(src, []))
    q = read_jsonl(result.out_dir / "quarantine.jsonl")
    assert len(q) == 1 and q[0]["locator"] == "line 2" and "iconv" in q[0]["error"]
    assert result.totals["out"] == 3


def test_validate_row_names_the_field():
    row = {"id": "1", "source": "s", "meta": {"phi_status": "raw"},
           "messages": [{"role": "doctor", "content": "hi"}]}
    with pytest.raises(RecordError, match=r"train.jsonl line 4: field 'messages\[0\].role'"):
        validate_row(row, "train.jsonl line 4")


def test_registry_lists_and_suggests():
    steps = registry.all_steps()
    assert {"table", "normalize_text", "length_filter"} <= set(steps)
    with pytest.raises(registry.UnknownStepError, match="did you mean 'length_filter'"):
        registry.get("lenght_filter")


def test_raw_phi_checkpoints_do_not_persist(tmp_path, build):
    src = tmp_path / "notes.jsonl"
    shutil.copy(MEDQUAD, src)
    data = _qa_recipe(src, ["normalize_text"])
    data["inputs"][0]["phi_status"] = "raw"
    result = build(data)
    # the only Arrow data left is the final dataset; the raw checkpoints' private folder is gone
    arrow = [p for p in result.out_dir.rglob("*.arrow") if "dataset" not in p.relative_to(result.out_dir).parts]
    assert arrow == []
    assert not list((result.out_dir / ".work").glob(".raw-*"))  # the run's private raw-PHI folder
    assert list((result.out_dir / "dataset").rglob("*.arrow"))
    rerun = build(data)
    assert not any(s.reused for s in rerun.steps)


def test_logs_come_from_this_runs_checkpoints_when_a_step_moves_to_the_raw_store(tmp_path, build):
    """A step once checkpointed in .work and now holding raw rows (temp store) must not pick
    up the old checkpoint's drop log."""
    src = tmp_path / "qa.jsonl"
    shutil.copy(MEDQUAD, src)
    first = build(_qa_recipe(src, [{"length_filter": {"min_chars": 80}}]), out=tmp_path / "out")
    raw = _qa_recipe(src, [{"length_filter": {"min_chars": 600}}])
    raw["inputs"][0]["phi_status"] = "raw"
    second = build(raw, out=tmp_path / "out")
    assert second.steps[-1].n_dropped > first.steps[-1].n_dropped
    log = read_jsonl(second.out_dir / "dropped" / "01-length_filter.jsonl")
    assert len(log) == second.steps[-1].n_dropped
    assert all(row["content"].startswith("withheld") for row in log)
    assert not list((second.out_dir / ".work").glob("01-length_filter-*"))


@pytest.mark.parametrize("keep", ["last", "none"])
def test_keep_checkpoints_bounds_the_rows_left_on_disk(tmp_path, build, keep):
    data = _qa_recipe(MEDQUAD, ["normalize_text", {"length_filter": {"min_chars": 600}}])
    data["output"] = {"keep_checkpoints": keep, "card": False}
    first = build(data)
    with_rows = sorted(d.parent.name.split("-")[1] for d in (first.out_dir / ".work").glob("*/data"))
    assert with_rows == (["length_filter"] if keep == "last" else [])
    # the logs of every step stay, so the build folder's drop log is complete
    assert 0 < len(read_jsonl(first.out_dir / "dropped" / "02-length_filter.jsonl")) == first.steps[-1].n_dropped
    second = build(data)
    assert [s.reused for s in second.steps] == [keep == "last"] * 3
    assert second.totals == first.totals
