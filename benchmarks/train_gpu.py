"""SFT throughput and memory: ``meddata train`` vs plain TRL ``SFTTrainer``, same everything.

A ~100M-parameter Llama-architecture model (built from a config, random init, tokenizer
trained locally) is fine-tuned for a fixed number of steps on a set built from
examples/data by the quickstart recipe, twice, each arm in its own process so the GPU
memory peaks are clean:

* ``meddata``: a one-stage training config run through ``meddata.trainers`` (validation,
  dataset type checks, column dropping, chat-template fitting, then TRL's SFTTrainer);
* ``trl``: SFTTrainer used directly, as a TRL user would, on the same saved dataset, model
  folder, chat template, batch, sequence length, packing, precision and optimizer.

It prints tokens/s and peak GPU memory for both and the ratios (goal: meddata/trl >= 1.0x
throughput, <= 1.0x memory). Nothing is downloaded. An H100 finishes in about 2 minutes.

    python benchmarks/train_gpu.py                      # the measurement (needs CUDA)
    python benchmarks/train_gpu.py --steps 600 --batch 16 --json out/bench/train_gpu.json
    python benchmarks/train_gpu.py --smoke              # tiny model, a few steps, CPU allowed:
                                                        # checks the script, measures nothing

Needs meddata installed with the train extra (``pip install -e '.[train]'``). On an offline
GPU machine whose image lacks some packages, carry wheels for: trl, datasets, dill,
multiprocess, pydantic, pydantic-core, annotated-types, typing-inspection, ftfy, wcwidth,
then ``pip install --no-deps`` them and ``pip install --no-deps --no-build-isolation -e .``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "examples" / "recipes" / "quickstart.yaml"

#: ~106M parameters: the BPE trainer reaches ~13.5k tokens on examples/data (embeddings untied).
FULL = {"hidden": 768, "layers": 12, "heads": 12, "intermediate": 2048, "vocab": 16384, "max_positions": 2048}
SMOKE = {"hidden": 64, "layers": 2, "heads": 4, "intermediate": 256, "vocab": 1024, "max_positions": 512}


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


# --------------------------------------------------------------------------- shared inputs


def prepare(work: Path, size: dict, seed: int, base: str | None = None) -> tuple[Path, Path]:
    """Build the dataset (quickstart recipe on examples/data) and the random-init model, or use
    ``base`` (a local model's short name such as smollm2-135m-instruct, a .gguf or a folder)."""
    from datasets import load_from_disk
    from meddata.trainers.tiny import build_tiny_llama

    from meddata import pipeline, recipe

    build = pipeline.run(recipe.load(RECIPE), work / "build")
    if base:
        from meddata.trainers.models import resolve_model_path

        return build.out_dir, Path(resolve_model_path(base))
    texts = [m["content"] for row in load_from_disk(str(build.dataset_dir))["train"] for m in row["messages"]]
    model = build_tiny_llama(work / "model", texts, vocab_size=size["vocab"], hidden=size["hidden"],
                             layers=size["layers"], heads=size["heads"], intermediate=size["intermediate"],
                             max_positions=size["max_positions"], seed=seed)
    return build.out_dir, model


def common_settings(args: argparse.Namespace) -> dict:
    """The knobs both arms share (SFTConfig names)."""
    return {
        "max_steps": args.steps,
        "per_device_train_batch_size": args.batch,
        "gradient_accumulation_steps": 1,
        "max_length": args.seq,
        "packing": True,
        "learning_rate": 3e-4,
        "lr_scheduler_type": "cosine",
        "optim": "adamw_torch_fused" if args.device == "cuda" else "adamw_torch",
        "logging_steps": min(10, args.steps),
        "seed": args.seed,
    }


# --------------------------------------------------------------------------- the two arms


def arm_meddata(args: argparse.Namespace) -> dict:
    from meddata.trainers import config as train_config
    from meddata.trainers import stages, validate

    s = common_settings(args)
    cfg = {
        "name": "bench-meddata",
        "output_dir": str(args.work / "run-meddata"),
        "model": {"name_or_path": str(args.model), "chat_template": "chatml", "dtype": "float32",
                  "attn_implementation": "sdpa"},
        "precision": "bf16" if args.device == "cuda" else "fp32",
        "seed": s["seed"],
        "resume": False,
        "stages": [{
            "name": "sft", "type": "sft", "dataset": {"path": str(args.build), "eval_split": None},
            "max_steps": s["max_steps"], "epochs": 1000, "per_device_batch_size": s["per_device_train_batch_size"],
            "max_length": s["max_length"], "packing": True, "learning_rate": s["learning_rate"],
            "lr_scheduler": s["lr_scheduler_type"], "optim": s["optim"], "gradient_checkpointing": False,
            "logging_steps": s["logging_steps"], "save_steps": s["max_steps"] + 1, "save_total_limit": 1,
        }],
    }
    plan = validate.validate(train_config.from_dict(cfg, source="bench", base_dir=args.work))
    result = stages.run(plan)
    m = result.stages[0].metrics
    return {"tokens": m["num_tokens"], "train_runtime_s": m["train_runtime_s"], "steps": m["global_step"],
            "first_loss": m.get("first_loss"), "last_loss": m.get("last_loss")}


def arm_trl(args: argparse.Namespace) -> dict:
    import torch
    from datasets import load_from_disk
    from meddata.trainers.chat_templates import resolve
    from meddata.trainers.common import checkpointing_args
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    s = common_settings(args)
    train = load_from_disk(str(args.build / "dataset"))["train"].select_columns(["messages"])
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    tokenizer.chat_template = resolve("chatml").source  # the same template, with generation markers
    tokenizer.eos_token = "<|im_end|>"
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32, attn_implementation="sdpa")
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    config = SFTConfig(
        output_dir=str(args.work / "run-trl"), num_train_epochs=1000, assistant_only_loss=True,
        bf16=args.device == "cuda", fp16=False, use_cpu=args.device != "cuda", **checkpointing_args(False),
        save_strategy="no", report_to="none", disable_tqdm=True, dataloader_num_workers=0, **s,
    )
    trainer = SFTTrainer(model=model, args=config, train_dataset=train, processing_class=tokenizer)
    trainer.train()
    logs = trainer.state.log_history
    losses = [h["loss"] for h in logs if "loss" in h]
    summary = next(h for h in logs if "train_runtime" in h)
    tokens = [h["num_tokens"] for h in logs if "num_tokens" in h][-1]
    return {"tokens": tokens, "train_runtime_s": summary["train_runtime"], "steps": trainer.state.global_step,
            "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None}


def run_arm(args: argparse.Namespace) -> None:
    """Child process: one arm, then its numbers as one JSON line on stdout."""
    import torch

    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    out = arm_meddata(args) if args.arm == "meddata" else arm_trl(args)
    out["wall_s"] = time.perf_counter() - t0
    out["peak_gpu_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30 if args.device == "cuda" else None
    out["tokens_per_s"] = out["tokens"] / out["train_runtime_s"]
    print("RESULT " + json.dumps(out), flush=True)


# --------------------------------------------------------------------------- driver


def _child(arm: str, args: argparse.Namespace, build: Path, model: Path) -> dict:
    cmd = [sys.executable, __file__, "--arm", arm, "--build", str(build), "--model", str(model),
           "--work", str(args.work), "--steps", str(args.steps), "--batch", str(args.batch), "--seq", str(args.seq),
           "--seed", str(args.seed), "--device", args.device]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-6000:])
        raise SystemExit(f"the {arm} arm failed (exit {proc.returncode})")
    return json.loads(lines[-1][len("RESULT "):])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=400, help="optimizer steps per arm")
    p.add_argument("--batch", type=int, default=16, help="per-device batch size (packed sequences)")
    p.add_argument("--seq", type=int, default=1024, help="sequence length (packing block size)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="write the results here as JSON too")
    p.add_argument("--base", help="a real model instead of the random-init one: a short name "
                   "(smollm2-135m-instruct, fetched with 'meddata models fetch'), a .gguf file or a folder")
    p.add_argument("--smoke", action="store_true", help="tiny model, 3 steps, CPU allowed: a check, not a benchmark")
    p.add_argument("--arm", choices=["meddata", "trl"], help=argparse.SUPPRESS)
    p.add_argument("--build", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--device", default="cuda", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.arm:
        run_arm(args)
        return 0
    if not args.smoke and not _cuda():
        print("train_gpu.py measures GPU training and needs a CUDA GPU; none is visible here "
              "(torch.cuda.is_available() is False). Run it on a GPU machine, or use --smoke to check the "
              "script on CPU.", file=sys.stderr)
        return 2
    size = SMOKE if args.smoke else FULL
    if args.smoke:
        args.steps, args.batch, args.seq = 3, 2, 128
        args.device = "cuda" if _cuda() else "cpu"
    with tempfile.TemporaryDirectory(prefix="meddata-bench-") as tmp:
        args.work = Path(tmp)
        t0 = time.perf_counter()
        build, model = prepare(args.work, size, args.seed, args.base)
        n_params = _param_count(model)
        name = args.base or f"random-init Llama {size['layers']}x{size['hidden']}"
        print(f"model: {name}, {n_params / 1e6:.1f}M parameters; "
              f"data: {build} (quickstart recipe on examples/data); setup {time.perf_counter() - t0:.0f}s")
        print(f"settings: {args.steps} steps, batch {args.batch} x {args.seq} tokens, packing, "
              f"{'bf16' if args.device == 'cuda' else 'fp32'}, device {args.device}")
        results = {arm: _child(arm, args, build, model) for arm in ("trl", "meddata")}
    _report(results, n_params, args)
    return 0


def _param_count(model: Path) -> int:
    from safetensors.torch import load_file

    return sum(t.numel() for f in model.glob("*.safetensors") for t in load_file(str(f)).values())


def _report(results: dict, n_params: int, args: argparse.Namespace) -> None:
    print(f"\n{'arm':<9}{'steps':>7}{'tokens':>12}{'train s':>10}{'tokens/s':>12}{'peak GiB':>10}"
          f"{'loss first->last':>22}")
    for arm, r in results.items():
        mem = f"{r['peak_gpu_mem_gib']:.2f}" if r["peak_gpu_mem_gib"] is not None else "-"
        loss = f"{r['first_loss']:.3f} -> {r['last_loss']:.3f}" if r["first_loss"] is not None else "-"
        print(f"{arm:<9}{r['steps']:>7}{int(r['tokens']):>12,}{r['train_runtime_s']:>10.1f}{r['tokens_per_s']:>12,.0f}"
              f"{mem:>10}{loss:>22}")
    ratio = results["meddata"]["tokens_per_s"] / results["trl"]["tokens_per_s"]
    line = f"\nthroughput meddata/trl: {ratio:.3f}x (goal >= 1.0x)"
    mem_ratio = None
    if results["trl"]["peak_gpu_mem_gib"]:
        mem_ratio = results["meddata"]["peak_gpu_mem_gib"] / results["trl"]["peak_gpu_mem_gib"]
        line += f"; peak memory meddata/trl: {mem_ratio:.3f}x"
    if args.smoke:
        line += "  [smoke run: not a measurement]"
    print(line)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"params": n_params, "steps": args.steps, "batch": args.batch,
                                         "seq": args.seq, "smoke": args.smoke, "results": results,
                                         "throughput_ratio": ratio, "memory_ratio": mem_ratio}, indent=2))


if __name__ == "__main__":
    sys.exit(main())
