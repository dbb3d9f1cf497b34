"""The fast path end to end on CPU: bf16 weights with the fp32-master AdamW, compiled decoder
layers on static batch shapes, real-token counts, and the GPU benchmark's smoke mode (all
three arms: plain TRL, hand-tuned TRL, meddata) agreeing with each other."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch
from meddata.trainers import config as train_config
from meddata.trainers import stages, validate
from meddata.trainers.tiny import build_tiny_llama
from testutil import EXAMPLES, ROOT


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    from datasets import load_from_disk

    from meddata import pipeline, recipe

    root = tmp_path_factory.mktemp("fast")
    qs = pipeline.run(recipe.load(EXAMPLES / "recipes" / "quickstart.yaml"), root / "qs", limit=30)
    texts = [m["content"] for row in load_from_disk(str(qs.dataset_dir))["train"] for m in row["messages"]]
    model = build_tiny_llama(root / "model", texts, vocab_size=512, hidden=32, layers=1, heads=2, max_positions=256)
    return {"root": root, "qs": qs.out_dir, "model": model}


def _run(work, name: str, speed: dict) -> dict:
    cfg = {"name": name, "output_dir": str(work["root"] / name), "seed": 0, "resume": False, "speed": speed,
           "model": {"name_or_path": str(work["model"]), "chat_template": "chatml"},
           "stages": [{"name": "sft", "type": "sft", "dataset": {"path": str(work["qs"]), "eval_split": None},
                       "max_steps": 4, "per_device_batch_size": 2, "max_length": 128, "packing": True,
                       "learning_rate": 3e-3, "gradient_checkpointing": False, "logging_steps": 1,
                       "save_steps": 2, "save_total_limit": 1}]}
    plan = validate.validate(train_config.from_dict(cfg, source=f"{name}.yaml", base_dir=work["root"]))
    return stages.run(plan).stages[0].metrics


@pytest.mark.slow
def test_bf16_weights_compiled_static_shapes_train_like_fp32(work):
    plain = _run(work, "plain", {})
    fast = _run(work, "fast", {"weights": "bf16", "compile": "on", "fused_adamw": "on"})
    assert plain["speed"]["weights"] == "fp32" and plain["speed"]["compile"] is False
    assert fast["speed"] == {**plain["speed"], "weights": "bf16", "optimizer": "adamw_fp32_master", "compile": True}
    # the same real tokens were trained on, although the fast run padded every batch to 2 x 128
    assert fast["train_tokens"] == plain["train_tokens"] > 0
    assert fast["mfu"] is None and plain["mfu"] is None and fast["peak_source"] == "n/a on CPU"
    assert fast["tokens_per_s"] > 0 and fast["timed_steps"] >= 1
    # bf16 weights with fp32 master weights follow the fp32 loss curve closely
    for (_, a), (_, b) in zip(plain["loss_curve"], fast["loss_curve"], strict=True):
        assert abs(a - b) / a < 0.01, (plain["loss_curve"], fast["loss_curve"])
    # the checkpoint carries the fp32 master weights, so a resumed run continues exactly
    opt = torch.load(work["root"] / "fast" / "sft" / "checkpoints" / "checkpoint-4" / "optimizer.pt")
    assert opt["master_weights"][0].dtype == torch.float32
    saved = json.loads((work["root"] / "fast" / "sft" / "model" / "config.json").read_text())
    assert saved.get("dtype", saved.get("torch_dtype")) == "bfloat16"


def _bench():
    spec = importlib.util.spec_from_file_location("train_gpu", ROOT / "benchmarks" / "train_gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_benchmark_smoke_runs_all_three_arms_and_they_agree(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert _bench().main(["--smoke", "--sizes", "105m", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "missing:" in printed and "acceptance" in printed and "speed: auto resolves to" in printed
    report = json.loads(out.read_text())
    arms = report["results"]["105m"]
    assert set(arms) == {"trl", "trl_tuned", "meddata"}
    assert not any(r.get("error") for r in arms.values()), arms
    # same model, data order and optimizer on CPU: the arms train identically ...
    losses = {arm: r["loss"] for arm, r in arms.items()}
    assert max(losses.values()) - min(losses.values()) < 1e-4 * losses["trl"], losses
    # ... on the same real tokens, counted the same way in and outside meddata
    assert len({r["train_tokens"] for r in arms.values()}) == 1
    assert all(r["tokens_per_s"] > 0 and r["mfu"] is None for r in arms.values())
    assert report["ratios"]["105m"]["meddata"]["tokens_per_s"] > 0
