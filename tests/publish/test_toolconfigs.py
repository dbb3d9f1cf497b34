"""Configs for LLaMA-Factory, axolotl and the TRL CLI, written next to every build: they point
at files that exist, map keys those files have, and use only flags the installed TRL accepts."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from datasets import load_from_disk
from publish_testkit import CHATDOCTOR, MEDQUAD, OPENSTAX, PUBLISH
from testutil import ROOT, read_jsonl

from meddata.output import write_outputs
from meddata.publish.toolconfigs import write_tool_configs
from meddata.records import SPLIT_COLUMN

TRL = ROOT / ".venv" / "bin" / "trl"


def _rows(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist() if path.suffix == ".parquet" else read_jsonl(path)


def check_llamafactory(root: Path) -> dict:
    """Every entry's file exists and its column/tag mapping matches the file's rows."""
    info = json.loads((root / "dataset_info.json").read_text())
    assert info
    for name, entry in info.items():
        path = root / entry["file_name"]
        assert path.is_file(), f"{name}: {entry['file_name']} missing"
        rows = _rows(path)
        assert rows
        keys = set().union(*(r.keys() for r in rows))
        assert set(entry["columns"].values()) <= keys, (name, entry["columns"], keys)
        if entry.get("formatting") == "sharegpt":
            tags = entry["tags"]
            roles = {tags["user_tag"], tags["assistant_tag"], tags["system_tag"]}
            for r in rows:
                turns = r[entry["columns"]["messages"]]
                assert all({tags["role_tag"], tags["content_tag"]} <= set(t) for t in turns)
                assert {t[tags["role_tag"]] for t in turns} <= roles
                assert turns[-1][tags["role_tag"]] == tags["assistant_tag"]
        if entry.get("ranking"):
            assert all(isinstance(r[entry["columns"]["chosen"]], str) for r in rows)
    return info


@pytest.fixture(scope="module")
def trl_flags() -> dict[str, frozenset[str]]:
    """Every --flag (both spellings) that the installed `trl sft --help` / `trl dpo --help` list.
    Both start at once: each spends ~10 s importing torch and transformers."""
    env = {**os.environ, "COLUMNS": "200"}
    procs = {sub: subprocess.Popen([str(TRL), sub, "--help"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, env=env) for sub in ("sft", "dpo")}
    flags = {}
    for sub, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
        flags[sub] = frozenset(re.findall(r"(?<![\w-])(--[a-z][a-z0-9_-]*)", out))
        assert {"--model_name_or_path", "--dataset_name", "--output_dir"} <= flags[sub]
    return flags


def script_command(root: Path) -> tuple[str, list[str]]:
    """(trl subcommand, flags) of tools/trl_sft.sh."""
    text = (root / "tools" / "trl_sft.sh").read_text()
    body = text.split("exec trl ", 1)[1].replace("\\\n", " ")
    words = shlex.split(body, posix=True)
    return words[0], [w for w in words[1:] if w.startswith("--")]


def check_trl(root: Path, accepted: dict[str, frozenset[str]]) -> tuple[str, list[str]]:
    sub, flags = script_command(root)
    unknown = [f for f in flags if f not in accepted[sub]]
    assert not unknown, f"trl {sub} does not accept {unknown}"
    return sub, flags


@pytest.fixture
def qa_build(build):
    return build({"name": "tools-qa", "inputs": [MEDQUAD, CHATDOCTOR],
                  "output": {"formats": ["arrow", "parquet", "jsonl"], "exports": ["sharegpt", "alpaca", "trl_standard"]}})


def test_conversational_build_with_exports(qa_build, trl_flags):
    root = qa_build.out_dir
    info = check_llamafactory(root)
    assert info == {"tools-qa": {
        "file_name": "exports/sharegpt-train.jsonl", "formatting": "sharegpt", "columns": {"messages": "conversations"},
        "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
                 "system_tag": "system"}}}
    axo = yaml.safe_load((root / "tools" / "axolotl.yaml").read_text())
    ds = axo["datasets"][0]
    assert ds["type"] == "chat_template" and ds["ds_type"] == "parquet" and (root / ds["path"]).is_file()
    first = _rows(root / ds["path"])[0]
    mapping = ds["message_property_mappings"]
    assert ds["field_messages"] in first and set(mapping.values()) <= set(first[ds["field_messages"]][0])
    assert "test_datasets" not in axo
    sub, flags = check_trl(root, trl_flags)
    assert sub == "sft" and "--dataset_test_split" not in flags
    text = (root / "tools" / "trl_sft.sh").read_text()
    assert '--dataset_name "$BUILD/parquet"' in text and os.access(root / "tools" / "trl_sft.sh", os.X_OK)


def test_without_exports_llamafactory_reads_the_messages_column(build, trl_flags):
    result = build({"name": "tools-plain", "inputs": [CHATDOCTOR]})  # default formats: arrow + jsonl
    root = result.out_dir
    info = check_llamafactory(root)
    assert info["tools-plain"]["file_name"] == "jsonl/train.jsonl"
    assert info["tools-plain"]["tags"]["role_tag"] == "role"
    assert yaml.safe_load((root / "tools" / "axolotl.yaml").read_text())["datasets"][0]["ds_type"] == "json"
    assert '"$BUILD/jsonl"' in (root / "tools" / "trl_sft.sh").read_text()
    check_trl(root, trl_flags)


def test_alpaca_export_maps_only_keys_present(build):
    result = build({"name": "tools-alpaca", "inputs": [CHATDOCTOR], "output": {"exports": ["alpaca"]}})
    info = check_llamafactory(result.out_dir)
    assert info["tools-alpaca"]["formatting"] == "alpaca"
    assert info["tools-alpaca"]["columns"] == {"prompt": "instruction", "query": "input", "response": "output",
                                               "history": "history"}


def test_splits_get_eval_entries_and_flags(qa_build, tmp_path, trl_flags):
    from meddata import recipe

    ds = load_from_disk(str(qa_build.dataset_dir))["train"]
    ds = ds.add_column(SPLIT_COLUMN, ["validation" if i % 5 == 0 else "train" for i in range(len(ds))])
    rec = recipe.from_dict({"name": "tools-split", "inputs": [MEDQUAD],
                            "output": {"formats": ["arrow", "parquet"], "exports": ["sharegpt"]}})
    out = tmp_path / "split"
    splits, _ = write_outputs(ds, rec.output, out)
    write_tool_configs(load_from_disk(str(splits)), rec.name, out, seed=rec.seed)
    info = check_llamafactory(out)
    assert set(info) == {"tools-split", "tools-split_validation"}
    assert info["tools-split_validation"]["file_name"] == "exports/sharegpt-validation.jsonl"
    axo = yaml.safe_load((out / "tools" / "axolotl.yaml").read_text())
    assert axo["test_datasets"][0]["path"] == "parquet/validation.parquet" and axo["test_datasets"][0]["split"] == "train"
    sub, flags = check_trl(out, trl_flags)
    assert {"--dataset_test_split", "--eval_strategy", "--eval_steps"} <= set(flags)


def test_preference_build_gets_a_ranking_entry_and_trl_dpo(build, trl_flags):
    result = build({"name": "tools-pref", "inputs": [{
        "builder": "table", "path": str(PUBLISH / "medquad.jsonl"), "source": "medquad", "licence": "CC-BY-4.0",
        "columns": {"prompt": "question", "chosen": "answer", "rejected": "I am not sure what {focus} is."}}],
        "output": {"formats": ["arrow", "parquet"], "exports": ["trl_standard"]}})
    root = result.out_dir
    info = check_llamafactory(root)
    assert info["tools-pref"]["ranking"] is True
    assert not (root / "tools" / "axolotl.yaml").exists()  # chat_template snippet is for messages
    sub, flags = check_trl(root, trl_flags)
    assert sub == "dpo" and "--beta" in flags


def test_text_build_gets_pretraining_entry_and_packing(build, trl_flags):
    result = build({"name": "tools-text", "inputs": [{**OPENSTAX, "columns": {"text": "{term}: {definition}"}}]})
    root = result.out_dir
    info = check_llamafactory(root)
    assert info["tools-text"]["columns"] == {"prompt": "text"}
    sub, flags = check_trl(root, trl_flags)
    assert sub == "sft" and {"--dataset_text_field", "--packing"} <= set(flags)


def test_stale_configs_are_removed_on_rebuild(build, tmp_path):
    out = tmp_path / "same"
    build({"name": "tools-a", "inputs": [CHATDOCTOR]}, out=out)
    assert (out / "tools" / "axolotl.yaml").exists()
    build({"name": "tools-a", "inputs": [{**OPENSTAX, "columns": {"text": "definition"}}]}, out=out)
    assert not (out / "tools" / "axolotl.yaml").exists()
    assert json.loads((out / "dataset_info.json").read_text())["tools-a"]["columns"] == {"prompt": "text"}


@pytest.mark.slow
def test_trl_script_trains_a_tiny_model_for_one_step(qa_build, tmp_path):
    """The written command really runs: TRL loads the build and takes one optimizer step."""
    from meddata.trainers.tiny import build_tiny_llama

    texts = [m["content"] for r in read_jsonl(qa_build.out_dir / "jsonl" / "train.jsonl") for m in r["messages"]]
    model = build_tiny_llama(tmp_path / "model", texts, chat_template="chatml", max_positions=256)
    env = {**os.environ, "MODEL": str(model), "OUTPUT": str(tmp_path / "ckpt"),
           "PATH": f"{TRL.parent}{os.pathsep}{os.environ['PATH']}", "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run(
        [str(qa_build.out_dir / "tools" / "trl_sft.sh"), "--max_steps", "1", "--max_length", "128",
         "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "1", "--use_cpu", "true",
         "--save_strategy", "no"],
        capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "ckpt" / "adapter_config.json").is_file()
