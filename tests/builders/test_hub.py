"""The hub builder on local dataset folders (save_to_disk and a JSON data dir), its errors
when the Hub is unreachable, and malformed data files."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml
from badinput import bad_inputs, check_robust_build, robust_cases
from meddata.builders.hub import HubUnavailableError
from testutil import DATA, ROOT, read_jsonl

from meddata.records import validate_row

QA_ROWS = [json.loads(line) for line in (DATA / "exam" / "medqa_usmle_sample.jsonl").open()]
COLUMNS = {"user": "question", "assistant": "answer"}


def _rows(result) -> list[dict]:
    path = result.out_dir / "jsonl" / "train.jsonl"
    return read_jsonl(path) if path.exists() else []


@pytest.fixture
def saved_dataset(tmp_path):
    from datasets import Dataset, DatasetDict

    records = [{"qid": f"q{i}", "question": r["question"], "answer": r["answer"], "step": r["meta_info"]}
               for i, r in enumerate(QA_ROWS)]
    path = tmp_path / "saved"
    DatasetDict({"train": Dataset.from_list(records[:4]), "test": Dataset.from_list(records[4:])}).save_to_disk(
        str(path))
    return path, records


@pytest.mark.parametrize("streaming", [False, True])
def test_save_to_disk_folder(build, saved_dataset, streaming):
    path, records = saved_dataset
    result = build({"name": "hub", "inputs": [
        {"builder": "hub", "dataset": str(path), "split": "test", "streaming": streaming, "licence": "CC0-1.0",
         "columns": {"id": "qid", "user": "Step {step}: {question}", "assistant": "answer"}}]})
    rows = _rows(result)
    assert [r["id"] for r in rows] == ["saved:q4", "saved:q5"]
    for row, rec in zip(rows, records[4:], strict=True):
        assert validate_row(row) == "conversational"
        assert row["messages"][0]["content"] == f"Step {rec['step']}: {rec['question']}"
        assert row["messages"][1]["content"] == rec["answer"]
        assert row["meta"]["builder"] == "hub" and row["meta"]["licence"] == "CC0-1.0"
        assert row["meta"]["file"].endswith("saved [test]") and row["meta"]["locator"].startswith("row ")


@pytest.mark.parametrize("streaming", [False, True])
def test_local_json_data_dir(build, tmp_path, streaming):
    data = tmp_path / "medqa_dir"
    data.mkdir()
    (data / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in QA_ROWS))
    result = build({"name": "hub", "inputs": [
        {"builder": "hub", "dataset": "medqa_dir", "streaming": streaming, "columns": COLUMNS}]},
        base_dir=tmp_path)
    rows = _rows(result)
    assert [r["messages"][0]["content"] for r in rows] == [r["question"] for r in QA_ROWS]
    assert {r["source"] for r in rows} == {"medqa_dir"}


def test_missing_split_and_column(build, saved_dataset, tmp_path):
    path, _ = saved_dataset
    with pytest.raises(HubUnavailableError, match=r"no split 'validation'; the folder has train, test"):
        build({"name": "hub", "inputs": [{"builder": "hub", "dataset": str(path), "split": "validation",
                                          "columns": COLUMNS}]}, out=tmp_path / "a")
    result = build({"name": "hub", "inputs": [{"builder": "hub", "dataset": str(path),
                                               "columns": {"user": "question", "assistant": "explanation"}}]},
                   out=tmp_path / "b")
    q = read_jsonl(result.out_dir / "quarantine.jsonl")
    assert len(q) == 4 and all("'explanation' is missing" in e["error"] for e in q)


def test_unreachable_hub_is_one_clear_line(tmp_path):
    recipe = tmp_path / "hub.yaml"
    recipe.write_text(yaml.safe_dump({"name": "hub", "inputs": [
        {"builder": "hub", "dataset": "meddata-test/no-such-dataset", "columns": COLUMNS}]}))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    proc = subprocess.run([sys.executable, "-m", "meddata.cli", "build", str(recipe), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().replace("\r", "\n").splitlines()[-1]
    last = last[last.index("meddata build: error:"):]  # after the progress bar's carriage return
    assert last.startswith("meddata build: error: hf://datasets/meddata-test/no-such-dataset [train]:")
    assert "Hub is unreachable (OfflineModeIsEnabled)" in last and "local folder" in last
    assert "Traceback" not in proc.stderr


@robust_cases
def test_malformed_input(build, tmp_path, case):
    data = tmp_path / "data"
    data.mkdir()
    good = (DATA / "exam" / "medqa_usmle_sample.jsonl").read_bytes()
    (data / "train.jsonl").write_bytes(bad_inputs(good, "jsonl")[case])
    got = check_robust_build(build, {"name": "hub-bad", "inputs": [
        {"builder": "hub", "dataset": str(data), "columns": COLUMNS}]}, tmp_path / "out", case)
    assert got.get("quarantine"), got
    assert all(e["file"].endswith("data [train]") for e in got["quarantine"])
