"""``meddata push``: raw-PHI refusal, private-by-default for patient data, the dry-run
folder (exactly what would be uploaded) loads with ``datasets`` and its card validates."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from datasets import load_dataset
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCard, DatasetCardData
from publish_testkit import CHATDOCTOR, DEID, MEDQUAD, SYNTHEA, synthea_phi
from testutil import read_jsonl


def meddata_subprocess(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The CLI in a fresh process: for checks that depend on HF_* variables read at import."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "meddata", *args], capture_output=True, text=True, env=full_env,
                          timeout=300)


@pytest.fixture
def meddata(capsys):
    """The CLI in this process: ``meddata(*args) -> (exit code, stdout, stderr)``."""
    from meddata.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


@pytest.fixture
def clean_build(build, tmp_path):
    return build({"name": "push-clean", "inputs": [MEDQUAD, CHATDOCTOR]}, out=tmp_path / "clean")


@pytest.fixture
def raw_build(build, tmp_path):
    return build({"name": "push-raw", "inputs": [SYNTHEA, MEDQUAD]}, out=tmp_path / "raw")


@pytest.fixture
def deid_build(build, tmp_path):
    return build({"name": "push-deid", "inputs": [SYNTHEA, MEDQUAD], "steps": [DEID]},
                 out=tmp_path / "deid")


def test_dry_run_writes_exactly_the_upload_and_it_loads(meddata, clean_build, tmp_path):
    out = tmp_path / "staged"
    code, stdout, stderr = meddata("push", str(clean_build.out_dir), "--repo", "someone/push-clean", "--dry-run", str(out))
    assert code == 0, stderr
    assert "private: no" in stdout
    assert _files(out) == ["README.md", "data/default/train-00000-of-00001.parquet"]
    loaded = load_dataset(str(out), cache_dir=str(tmp_path / "cache"))
    expected = read_jsonl(clean_build.out_dir / "jsonl" / "train.jsonl")
    assert list(loaded) == ["train"] and loaded["train"]["id"] == [r["id"] for r in expected]
    card = DatasetCard.load(out / "README.md")
    data = DatasetCardData(**card.data.to_dict())
    MetadataConfigs.from_dataset_card_data(data)
    assert data.configs == [{"config_name": "default",
                             "data_files": [{"split": "train", "path": "data/default/train-*.parquet"}]}]
    assert sorted(data.license) == ["apache-2.0", "cc-by-4.0"]
    # the body is the build's card, with the files section rewritten for the repo layout
    assert "| train | `data/default/train-*.parquet` |" in card.text
    assert "parquet/train.parquet" not in card.text and "## Processing" in card.text


def test_same_folder_name_never_serves_another_builds_rows(clean_build, raw_build, tmp_path):
    """``datasets`` keys its cache for README-configured folders on the card metadata, not the
    files; the card's dataset_info (split sizes) keeps two dry runs named alike apart."""
    from meddata.publish.hub import plan_push, stage

    stage(plan_push(clean_build.out_dir, "a/b"), tmp_path / "one" / "staged")
    stage(plan_push(raw_build.out_dir, "a/b", force=True), tmp_path / "two" / "staged")
    cache = str(tmp_path / "cache")  # one cache for both, as the default one would be
    one = load_dataset(str(tmp_path / "one" / "staged"), cache_dir=cache)["train"]
    two = load_dataset(str(tmp_path / "two" / "staged"), cache_dir=cache)["train"]
    assert (one.num_rows, two.num_rows) == (100, 72)
    assert "text" in two.column_names and "text" not in one.column_names


def test_named_config_goes_to_its_own_folder(meddata, clean_build, tmp_path):
    out = tmp_path / "staged"
    code, _, stderr = meddata("push", str(clean_build.out_dir), "--repo", "someone/x", "--config-name", "stage1",
                              "--dry-run", str(out))
    assert code == 0, stderr
    assert _files(out) == ["README.md", "data/stage1/train-00000-of-00001.parquet"]
    assert load_dataset(str(out), "stage1", cache_dir=str(tmp_path / "cache"))["train"].num_rows == clean_build.rows_out


def test_refuses_raw_rows_before_touching_the_network(meddata, raw_build, tmp_path):
    # an endpoint nothing listens on: the refusal must come first, so nothing is contacted
    env = {"HF_TOKEN": "hf_not_a_real_token_0000", "HF_ENDPOINT": f"http://127.0.0.1:{_free_port()}"}
    proc = meddata_subprocess("push", str(raw_build.out_dir), "--repo", "someone/raw", env=env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "refusing to push: 12 rows still have meta.phi_status = raw" in proc.stderr
    out = tmp_path / "staged"
    code, _, stderr = meddata("push", str(raw_build.out_dir), "--repo", "someone/raw", "--dry-run", str(out))
    assert code == 2 and "refusing to push" in stderr
    assert not out.exists()


def test_force_pushes_raw_rows_privately(meddata, raw_build, tmp_path):
    out = tmp_path / "staged"
    code, stdout, stderr = meddata("push", str(raw_build.out_dir), "--repo", "someone/raw", "--force", "--dry-run", str(out))
    assert code == 0, stderr
    assert "private: yes" in stdout and "forced push of 12 rows with phi_status raw" in stdout
    assert load_dataset(str(out), cache_dir=str(tmp_path / "cache"))["train"].num_rows == 72


def test_patient_derived_builds_are_private_unless_public_is_asked(meddata, deid_build, tmp_path):
    from meddata.publish.hub import plan_push

    assert deid_build.totals["out"] == 72
    plan = plan_push(deid_build.out_dir, "someone/deid")
    assert plan.private and "raw patient data" in plan.private_reason
    assert not plan_push(deid_build.out_dir, "someone/deid", private=False).private
    code, stdout, _ = meddata("push", str(deid_build.out_dir), "--repo", "someone/deid", "--dry-run", str(tmp_path / "a"))
    assert code == 0 and "private: yes" in stdout
    code, stdout, _ = meddata("push", str(deid_build.out_dir), "--repo", "someone/deid", "--public",
                              "--dry-run", str(tmp_path / "b"))
    assert code == 0 and "private: no (requested)" in stdout
    card = DatasetCard.load(tmp_path / "b" / "README.md")
    staged = "\n".join(str(v) for v in load_dataset(str(tmp_path / "b"), cache_dir=str(tmp_path / "cache"))
                       ["train"].to_pandas().to_dict("records"))
    assert "using strategy `mask`" in card.content
    for value in synthea_phi():
        assert value not in card.content and value not in staged


def test_token_is_never_printed_and_errors_are_one_line(clean_build, tmp_path):
    secret = "hf_SECRETtoken1234567890"
    env = {"HF_TOKEN": secret, "HF_ENDPOINT": f"http://127.0.0.1:{_free_port()}", "HF_HUB_DISABLE_TELEMETRY": "1"}
    proc = meddata_subprocess("push", str(clean_build.out_dir), "--repo", "someone/x", env=env)
    assert proc.returncode == 2
    assert "could not reach the Hub to push someone/x" in proc.stderr
    assert secret not in proc.stdout + proc.stderr and "Traceback" not in proc.stderr
    no_token = {k: v for k, v in os.environ.items() if k != "HF_TOKEN"}
    no_token["HF_HOME"] = str(tmp_path / "empty-hf-home")
    proc = subprocess.run([sys.executable, "-m", "meddata", "push", str(clean_build.out_dir), "--repo", "someone/x"],
                          capture_output=True, text=True, env=no_token, timeout=300)
    assert proc.returncode == 2 and "no Hugging Face token: set HF_TOKEN" in proc.stderr


def test_user_errors(meddata, clean_build, tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x.txt").write_text("x")
    cases = [
        (["push", str(clean_build.out_dir), "--repo", "someone/x", "--dry-run", str(tmp_path / "busy")], "not empty"),
        (["push", str(tmp_path), "--repo", "someone/x", "--dry-run", str(tmp_path / "n")], "not a meddata build folder"),
        (["push", str(clean_build.out_dir), "--repo", "bad repo id!", "--dry-run", str(tmp_path / "m")], "not a valid repo id"),
        (["push", str(clean_build.out_dir), "--repo", "a/b", "--config-name", "a/b", "--dry-run", str(tmp_path / "k")],
         "--config-name"),
    ]
    for args, message in cases:
        code, _, stderr = meddata(*args)
        assert code == 2 and message in stderr, (args, stderr)
    with pytest.raises(SystemExit) as done:
        meddata("push", "--help")
    assert done.value.code == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
