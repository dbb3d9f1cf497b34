"""Configs for the training tools people already use, written next to every build.

* ``dataset_info.json`` (build folder root): LLaMA-Factory dataset entries. Point
  LLaMA-Factory's ``dataset_dir`` at the build folder and use ``dataset: <recipe name>``
  (``<name>_validation`` / ``<name>_test`` for the other splits as ``eval_dataset``).
* ``tools/axolotl.yaml``: the ``datasets`` / ``test_datasets`` section of an axolotl config
  (``type: chat_template`` over the TRL ``messages`` column), for conversational builds.
* ``tools/trl_sft.sh``: a ready ``trl sft`` (``trl dpo`` for preference builds) command line
  with the flags of the installed TRL version; ``MODEL=... OUTPUT=... tools/trl_sft.sh``.

Entries point at files that exist in this build and map only keys the files contain
(the column map is read from the files themselves), so a tool never meets a missing column.
"""

from __future__ import annotations

import json
import shlex
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from datasets import DatasetDict

from meddata.publish.buildinfo import row_types

LLAMAFACTORY_FILE = "dataset_info.json"
AXOLOTL_FILE = "tools/axolotl.yaml"
TRL_FILE = "tools/trl_sft.sh"
SHAREGPT_TAGS = {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
                 "system_tag": "system"}
OPENAI_TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
               "system_tag": "system"}
SFT_KINDS = ("conversational", "prompt_completion", "language_modeling")
DEFAULT_MODEL = "Qwen/Qwen2.5-0.5B-Instruct"


def split_kinds(splits: DatasetDict) -> dict[str, str]:
    """The dominant TRL dataset type of each split (``none`` for an empty split)."""
    out = {}
    for name, ds in splits.items():
        counts = Counter(row_types(ds.data.table).tolist()) if len(ds) else Counter()
        out[name] = counts.most_common(1)[0][0] if counts else "none"
    return out


def file_keys(path: Path, limit: int = 200) -> set[str]:
    """Top-level keys seen in the first ``limit`` rows of a JSONL or Parquet file."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return set(pq.read_schema(path).names)
    keys: set[str] = set()
    with path.open(encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            if i >= limit:
                break
            if line.strip():
                keys.update(json.loads(line))
    return keys


def _first(root: Path, candidates: Iterable[str]) -> str | None:
    return next((c for c in candidates if (root / c).is_file()), None)


def llamafactory_entry(root: Path, split: str, kind: str) -> dict[str, Any] | None:
    """One LLaMA-Factory dataset entry for a split, or None when no file fits its format."""
    if kind in ("conversational", "prompt_completion"):
        f = _first(root, [f"exports/sharegpt-{split}.jsonl"])
        if f and "conversations" in file_keys(root / f):
            return {"file_name": f, "formatting": "sharegpt", "columns": {"messages": "conversations"},
                    "tags": SHAREGPT_TAGS}
        f = _first(root, [f"exports/alpaca-{split}.jsonl"])
        if f:
            keys = file_keys(root / f)
            cols = {"prompt": "instruction", "query": "input", "response": "output", "history": "history",
                    "system": "system"}
            return {"file_name": f, "formatting": "alpaca", "columns": {k: v for k, v in cols.items() if v in keys}}
        f = _first(root, [f"parquet/{split}.parquet", f"jsonl/{split}.jsonl"])
        if kind == "conversational" and f and "messages" in file_keys(root / f):
            return {"file_name": f, "formatting": "sharegpt", "columns": {"messages": "messages"}, "tags": OPENAI_TAGS}
        f = _first(root, [f"exports/trl_standard-{split}.jsonl"])
        if f:
            return {"file_name": f, "columns": {"prompt": "prompt", "response": "completion"}}
        return None
    if kind == "preference":
        f = _first(root, [f"exports/trl_standard-{split}.jsonl"])
        if f and {"prompt", "chosen", "rejected"} <= file_keys(root / f):
            return {"file_name": f, "ranking": True,
                    "columns": {"prompt": "prompt", "chosen": "chosen", "rejected": "rejected"}}
        return None
    if kind == "language_modeling":
        f = _first(root, [f"parquet/{split}.parquet", f"jsonl/{split}.jsonl"])
        if f and "text" in file_keys(root / f):
            return {"file_name": f, "columns": {"prompt": "text"}}
    return None


def llamafactory_info(root: Path, name: str, kinds: dict[str, str]) -> dict[str, Any]:
    info = {}
    for split, kind in kinds.items():
        entry = llamafactory_entry(root, split, kind)
        if entry is not None:
            info[name if split == "train" else f"{name}_{split}"] = entry
    return info


def _axolotl_dataset(path: str, test: bool) -> dict[str, Any]:
    ds: dict[str, Any] = {"path": path, "ds_type": "parquet" if path.endswith(".parquet") else "json"}
    if test:
        ds["split"] = "train"  # a local file loads as one 'train' split
    ds.update({"type": "chat_template", "field_messages": "messages",
               "message_property_mappings": {"role": "role", "content": "content"}})
    if not test:
        ds.update({"roles_to_train": ["assistant"], "train_on_eos": "turn"})
    return ds


def axolotl_snippet(root: Path, name: str, kinds: dict[str, str]) -> str | None:
    """The datasets section of an axolotl config for conversational splits, or None."""
    files = {s: _first(root, [f"parquet/{s}.parquet", f"jsonl/{s}.jsonl"]) for s, k in kinds.items()
             if k == "conversational"}
    files = {s: f for s, f in files.items() if f}
    if "train" not in files:
        return None
    config: dict[str, Any] = {"chat_template": "tokenizer_default",
                              "datasets": [_axolotl_dataset(files.pop("train"), test=False)]}
    eval_split = "validation" if "validation" in files else next(iter(files), None)
    if eval_split:
        config["test_datasets"] = [_axolotl_dataset(files[eval_split], test=True)]
    header = (f"# axolotl dataset section for the meddata build {name!r} (TRL messages, type chat_template).\n"
              "# Paths are relative to the build folder: run axolotl from there, or make them absolute.\n"
              "# Merge into your axolotl config (base_model, adapter, sequence_len, ...).\n")
    return header + yaml.safe_dump(config, sort_keys=False)


def trl_command(root: Path, name: str, kinds: dict[str, str], seed: int = 0) -> tuple[str, list[str]] | None:
    """(TRL subcommand, arguments) for the build, or None when no split is trainable with TRL."""
    train = kinds.get("train")
    if train not in (*SFT_KINDS, "preference"):
        return None
    folder = next((f for f, ext in (("parquet", "parquet"), ("jsonl", "jsonl"))
                   if all((root / f / f"{s}.{ext}").is_file() for s in kinds)), None)
    if folder is None:
        return None
    sub = "dpo" if train == "preference" else "sft"
    args = ["--model_name_or_path", "$MODEL", "--dataset_name", f"$BUILD/{folder}",
            "--dataset_train_split", "train"]
    eval_split = "validation" if "validation" in kinds else ("test" if "test" in kinds else None)
    if eval_split:
        args += ["--dataset_test_split", eval_split, "--eval_strategy", "steps", "--eval_steps", "200"]
    args += ["--output_dir", "$OUTPUT", "--max_length", "2048",
             "--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "4",
             "--learning_rate", "5e-6" if sub == "dpo" else "2e-4", "--num_train_epochs", "1" if sub == "dpo" else "3",
             "--lr_scheduler_type", "cosine", "--logging_steps", "10", "--save_strategy", "epoch",
             "--seed", str(seed), "--gradient_checkpointing", "--report_to", "none"]
    if train == "language_modeling":
        args += ["--dataset_text_field", "text", "--packing"]
    if sub == "dpo":
        args += ["--beta", "0.1"]
    args += ["--use_peft", "--lora_r", "16", "--lora_alpha", "32", "--lora_target_modules", "all-linear"]
    return sub, args


def trl_script(root: Path, name: str, kinds: dict[str, str], seed: int = 0) -> str | None:
    cmd = trl_command(root, name, kinds, seed)
    if cmd is None:
        return None
    sub, args = cmd
    lines = []
    i = 0
    while i < len(args):
        flag = args[i]
        if i + 1 < len(args) and not args[i + 1].startswith("--"):
            value = args[i + 1]
            quoted = f'"{value}"' if value.startswith("$") else shlex.quote(value)
            lines.append(f"  {flag} {quoted}")
            i += 2
        else:
            lines.append(f"  {flag}")
            i += 1
    what = "preference-tune (DPO)" if sub == "dpo" else "fine-tune"
    return "\n".join([
        "#!/usr/bin/env bash",
        f"# {what.capitalize()} a model on the meddata build {name!r} with TRL's command line (trl {sub}).",
        "# MODEL: a local model folder or Hub id; OUTPUT: where checkpoints go. Extra flags are passed on,",
        "# e.g. tools/trl_sft.sh --bf16 true. Drop the --use_peft/--lora_* flags for full fine-tuning.",
        "set -euo pipefail",
        'BUILD="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"',
        f'MODEL="${{MODEL:-{DEFAULT_MODEL}}}"',
        f'OUTPUT="${{OUTPUT:-$PWD/checkpoints/{name}-{sub}}}"',
        f"exec trl {sub} \\",
        " \\\n".join([*lines, '  "$@"']),
        "",
    ])


def write_tool_configs(splits: DatasetDict, name: str, out_dir: Path, seed: int = 0) -> list[Path]:
    """Write every config that fits this build; remove stale ones from an earlier run."""
    out_dir = Path(out_dir)
    kinds = split_kinds(splits)
    written: list[Path] = []
    for rel in (LLAMAFACTORY_FILE, AXOLOTL_FILE, TRL_FILE):
        (out_dir / rel).unlink(missing_ok=True)
    info = llamafactory_info(out_dir, name, kinds)
    if info:
        path = out_dir / LLAMAFACTORY_FILE
        path.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        written.append(path)
    for rel, text in ((AXOLOTL_FILE, axolotl_snippet(out_dir, name, kinds)),
                      (TRL_FILE, trl_script(out_dir, name, kinds, seed))):
        if text is None:
            continue
        path = out_dir / rel
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
        if rel.endswith(".sh"):
            path.chmod(0o755)
        written.append(path)
    return written
