"""GPU training speed: meddata's defaults vs plain TRL, three arms in one run, two model sizes.

Random-init Llama models (tokenizer trained locally on the quickstart build, nothing is
downloaded) are fine-tuned for a fixed number of steps on the quickstart build of
examples/data, packed to full sequences, by three arms, each in its own process so GPU
memory peaks are clean:

* ``trl``        SFTTrainer with TRL's defaults, as a TRL user writes it (fp32 weights under
                 bf16 autocast, SDPA, TRL's padding-free BFD packing);
* ``trl_tuned``  SFTTrainer hand-tuned with the same switches meddata picks, through
                 SFTConfig only (bf16 weights, the same attention, fused AdamW, torch_compile,
                 static padding, DataLoader workers, Liger when meddata uses it);
* ``meddata``    a one-stage ``meddata train`` config with the default ``speed: auto``.

Sizes: ``105m`` (12 x 768, vocab 16k, batch 16 x 1024) and ``1b`` (16 x 2048, intermediate
8192, batch 8 x 2048). The first steps (compilation, allocator warm-up) are left out of the
timing; every arm logs the same steps, and the loss after the last step is printed so that
speed is never bought with wrong training. Printed per arm: tokens/s (real tokens, padding
excluded), MFU against the measured bf16 matmul peak, peak GPU memory, the loss, and ratios
against ``trl``. Optional checks when time is left: QLoRA (bitsandbytes) and ``meddata eval``.

    python benchmarks/train_gpu.py --json out/bench/train_gpu.json    # GPU, <= 8 minutes
    python benchmarks/train_gpu.py --smoke                             # CPU, tiny sizes, < 2 minutes

On an offline GPU machine, carry the wheels ``benchmarks/gpu_wheels.sh`` downloads (meddata's
own wheel included), then ``pip install --no-deps --no-index .whl/*.whl``; the script starts
by printing which packages (and whether a C compiler for Triton) are missing.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "examples" / "recipes" / "quickstart.yaml"
EVAL_SET = ROOT / "tests" / "data" / "eval" / "medqa_sample.jsonl"
ARMS = ("trl", "trl_tuned", "meddata", "meddata_safe")
#: Run only when the meddata arm fails: compile off and SDPA, to still measure the rest of the defaults.
SAFE_SPEED = {"compile": "off", "attention": "sdpa"}
#: The order arms run in: the ones the acceptance criteria need first, in case time runs out.
PRIORITY = [("105m", "trl"), ("105m", "meddata"), ("1b", "meddata"), ("1b", "trl"), ("105m", "trl_tuned"),
            ("1b", "trl_tuned")]

SIZES = {
    "105m": {"hidden": 768, "layers": 12, "heads": 12, "intermediate": 2048, "vocab": 16384, "seq": 1024,
             "batch": 16, "warmup": 5, "steps": 50},
    "1b": {"hidden": 2048, "layers": 16, "heads": 16, "intermediate": 8192, "vocab": 16384, "seq": 2048,
           "batch": 8, "warmup": 4, "steps": 20},
}
SMOKE_SIZES = {
    "105m": {"hidden": 64, "layers": 2, "heads": 4, "intermediate": 256, "vocab": 1024, "seq": 128,
             "batch": 2, "warmup": 1, "steps": 4},
    "1b": {"hidden": 96, "layers": 2, "heads": 4, "intermediate": 256, "vocab": 1024, "seq": 256,
           "batch": 2, "warmup": 1, "steps": 4},
}
LEARNING_RATE = 3e-4
#: Acceptance (issue 14): meddata >= 3x trl tokens/s on 105m, MFU >= 35 % on 1b, memory <= trl, loss within 2 %.
GOALS = {"speedup_105m": 3.0, "mfu_1b": 0.35, "loss_rel": 0.02}

#: (distribution, needed) the GPU image may lack; needed ones stop the run when missing.
PACKAGES = [
    ("torch", True), ("transformers", True), ("accelerate", True), ("peft", True), ("trl", True),
    ("datasets", True), ("dill", True), ("multiprocess", True), ("xxhash", True), ("pandas", True),
    ("pyarrow", True), ("fsspec", True), ("pydantic", True), ("pydantic-core", True), ("annotated-types", True),
    ("typing-inspection", True), ("ftfy", True), ("wcwidth", True), ("pypdf", True), ("pyyaml", True),
    ("jinja2", True), ("huggingface-hub", True), ("typing-extensions", True), ("tokenizers", True), ("safetensors", True), ("psutil", True), ("meddata", True),
    ("liger-kernel", False), ("bitsandbytes", False), ("flash-attn", False), ("triton", False),
    ("openai", False), ("rouge-score", False),
]


def requirement_conflicts(dists: list[str]) -> list[str]:
    """``datasets 5.2.0 needs huggingface-hub>=1.31.0, have 1.20.0`` for each installed
    distribution whose (non-extra) requirement the installed version does not satisfy."""
    from packaging.requirements import Requirement

    out = []
    for dist in dists:
        try:
            version, requires = importlib.metadata.version(dist), importlib.metadata.requires(dist) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for line in requires:
            req = Requirement(line)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            try:
                have = importlib.metadata.version(req.name)
            except importlib.metadata.PackageNotFoundError:
                continue  # reported as missing when it matters
            if req.specifier and not req.specifier.contains(have, prereleases=True):
                out.append(f"{dist} {version} needs {req}, have {have}")
    return out


def package_report() -> tuple[list[str], list[str]]:
    """(missing needed, missing optional) distributions; prints what is installed."""
    present, missing, optional = [], [], []
    for dist, needed in PACKAGES:
        try:
            present.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            (missing if needed else optional).append(dist)
    print("packages:  " + ", ".join(present))
    print("missing:   " + (", ".join(missing) or "none") + "   optional missing: " + (", ".join(optional) or "none"))
    conflicts = requirement_conflicts([d for d, _ in PACKAGES])
    print("conflicts: " + ("; ".join(conflicts) or "none"))
    import shutil

    cc = next((shutil.which(n) for n in (os.environ.get("CC"), "cc", "gcc", "clang") if n and shutil.which(n)), None)
    print(f"C compiler: {cc or 'none (Triton, hence torch.compile, flex_attention and Liger, need one)'}", flush=True)
    return missing, optional


# --------------------------------------------------------------------------- shared inputs


def prepare(work: Path, sizes: dict[str, dict], seed: int) -> tuple[Path, dict[str, Path]]:
    """The quickstart build and one random-init model per size (saved as fp32 checkpoints)."""
    from datasets import load_from_disk
    from meddata.trainers.tiny import build_tiny_llama

    from meddata import pipeline, recipe

    build = pipeline.run(recipe.load(RECIPE), work / "build")
    texts = [m["content"] for row in load_from_disk(str(build.dataset_dir))["train"] for m in row["messages"]]
    models = {}
    for name, size in sizes.items():
        models[name] = build_tiny_llama(work / f"model-{name}", texts, vocab_size=size["vocab"], hidden=size["hidden"],
                                        layers=size["layers"], heads=size["heads"],
                                        intermediate=size["intermediate"], max_positions=size["seq"], seed=seed)
    return build.out_dir, models


def meddata_speed(cuda: bool):
    """What ``speed: auto`` resolves to for an SFT stage on this machine (the tuned TRL arm copies it)."""
    from meddata.trainers import config as train_config
    from meddata.trainers import hardware, speed

    cfg = train_config.TrainConfig.model_validate({
        "name": "probe", "model": {"name_or_path": "x"},
        "stages": [{"name": "s", "type": "sft", "dataset": {"path": "x"}, "packing": True}]})
    hw = hardware.detect()
    return speed.resolve(cfg, cfg.stages[0], hw, hardware.resolve_precision("auto", hw))


# --------------------------------------------------------------------------- the arms


def _sft_settings(a: dict) -> dict:
    """SFTConfig fields every arm shares."""
    return {"max_steps": a["steps"], "per_device_train_batch_size": a["batch"], "gradient_accumulation_steps": 1,
            "max_length": a["seq"], "packing": True, "learning_rate": LEARNING_RATE, "lr_scheduler_type": "cosine",
            "warmup_steps": 0, "logging_steps": a["log_every"], "seed": a["seed"]}


def arm_trl(a: dict, tuned: bool) -> dict:
    import torch
    from datasets import load_from_disk
    from meddata.trainers import throughput
    from meddata.trainers.chat_templates import resolve
    from meddata.trainers.common import checkpointing_args
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    cuda = torch.cuda.is_available()
    train = load_from_disk(str(Path(a["build"]) / "dataset"))["train"].select_columns(["messages"])
    tokenizer = AutoTokenizer.from_pretrained(a["model"])
    tokenizer.chat_template = resolve("chatml").source  # the template meddata fits, with generation markers
    tokenizer.eos_token = "<|im_end|>"
    extra: dict[str, Any] = {"model_init_kwargs": {"dtype": "float32"}}
    settings = "TRL defaults"
    if tuned:
        sp = meddata_speed(cuda)
        extra = {
            "model_init_kwargs": {"dtype": "bfloat16" if sp.weights.value == "bf16" else "float32",
                                  "attn_implementation": sp.attention.value},
            "optim": "adamw_torch_fused" if sp.fused else "adamw_torch",
            "torch_compile": bool(sp.compile.value),
            "dataloader_num_workers": sp.dataloader_workers.value,
            "dataloader_persistent_workers": sp.dataloader_workers.value > 0,
            "use_liger_kernel": bool(sp.liger.value),
            "pad_to_multiple_of": a["batch"] * a["seq"] if sp.static_shapes else None,
        }
        settings = ", ".join(f"{k}={v}" for k, v in extra.items() if k != "model_init_kwargs") + \
            f", {extra['model_init_kwargs']}"
    config = SFTConfig(output_dir=str(Path(a["work"]) / f"run-{a['size']}-{a['arm']}"), num_train_epochs=1000,
                       assistant_only_loss=True, bf16=cuda, fp16=False, use_cpu=not cuda, save_strategy="no",
                       report_to="none", disable_tqdm=True, **checkpointing_args(False), **_sft_settings(a), **extra)
    trainer = SFTTrainer(model=a["model"], args=config, train_dataset=train, processing_class=tokenizer)
    trainer.model.generation_config.eos_token_id = tokenizer.eos_token_id
    meter = throughput.TokenMeter(pad_id=tokenizer.pad_token_id)
    step = trainer.training_step

    def counting_step(model, inputs, num_items_in_batch=None):  # measurement probe only
        meter.count(inputs)
        return step(model, inputs, num_items_in_batch)

    trainer.training_step = counting_step
    flops, params = throughput.model_flops_per_token(trainer.model)
    peak, source = throughput.device_peak(torch.cuda.get_device_name(0) if cuda else "cpu", cuda)
    cb = throughput.callback(meter, flops, params, peak, source, a["warmup"])
    trainer.add_callback(cb)
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {**cb.summary, "loss": losses[-1] if losses else None, "losses": losses,
            "steps": trainer.state.global_step, "settings": settings}


def arm_meddata(a: dict, peft: str = "none", speed: dict | None = None) -> dict:
    from meddata.trainers import config as train_config
    from meddata.trainers import fastpath, stages, validate

    fastpath.WARMUP_STEPS = {True: a["warmup"], False: a["warmup"]}  # the same timing window as the TRL arms
    cfg = {
        "name": f"bench-{a['size']}-{a['arm']}",
        "output_dir": str(Path(a["work"]) / f"run-{a['size']}-{a['arm']}"),
        "model": {"name_or_path": a["model"], "chat_template": "chatml"},
        "seed": a["seed"], "resume": False, "speed": speed or {},
        "stages": [{
            "name": "sft", "type": "sft", "dataset": {"path": a["build"], "eval_split": None},
            "max_steps": a["steps"], "epochs": 1000, "per_device_batch_size": a["batch"], "max_length": a["seq"],
            "packing": True, "learning_rate": LEARNING_RATE, "lr_scheduler": "cosine", "gradient_checkpointing": False,
            "logging_steps": a["log_every"], "save_steps": a["steps"] + 1, "save_total_limit": 1,
            "peft": {"method": peft},
        }],
    }
    plan = validate.validate(train_config.from_dict(cfg, source="bench", base_dir=Path(a["work"])))
    result = stages.run(plan)
    m = result.stages[0].metrics
    losses = [v for _, v in m.get("loss_curve", [])]
    keep = ("tokens_per_s", "timed_tokens", "timed_s", "timed_steps", "mfu", "peak_flops", "peak_source",
            "peak_memory_gib", "model_flops_per_token", "params", "train_tokens", "model_tflops_per_s")
    return {**{k: m.get(k) for k in keep}, "loss": losses[-1] if losses else None, "losses": losses,
            "steps": m["global_step"], "settings": "speed: auto -> " + ", ".join(f"{k}={v}" for k, v in
                                                                             m["speed"].items()),
            "run_dir": str(result.output_dir)}


def run_arm(a: dict) -> dict:
    """One arm, in this process; errors become a result with ``error`` set."""
    t0 = time.perf_counter()
    try:
        if a["arm"] == "meddata":
            out = arm_meddata(a)
        elif a["arm"] == "meddata_safe":
            out = arm_meddata(a, speed=SAFE_SPEED)
        elif a["arm"] == "qlora":
            out = arm_meddata(a, peft="qlora")
        else:
            out = arm_trl(a, tuned=a["arm"] == "trl_tuned")
    except Exception as exc:  # a failing arm is a result to report, not the end of the run
        import traceback

        traceback.print_exc()
        out = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"}
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    return out


# --------------------------------------------------------------------------- driver


def _child(a: dict, timeout: float) -> dict:
    cmd = [sys.executable, __file__, "--arm-json", json.dumps(a)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"})
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f}s (time budget)", "wall_s": round(timeout, 1)}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if not lines:
        tail = (proc.stdout[-2000:] + proc.stderr[-4000:]).strip()
        print(f"--- {a['size']} {a['arm']} failed (exit {proc.returncode}); last output:\n{tail}\n---", flush=True)
        return {"error": f"exit {proc.returncode}", "wall_s": None}
    out = json.loads(lines[-1][len("RESULT "):])
    if out.get("error"):
        print(f"--- {a['size']} {a['arm']}: {out['error']}\n{proc.stderr[-3000:]}\n---", flush=True)
    return out


def run(args: argparse.Namespace) -> dict:
    """Everything after the package check; returns the results (also printed)."""
    import torch

    t_start = time.perf_counter()
    cuda = torch.cuda.is_available()
    sizes = {k: dict(v) for k, v in (SMOKE_SIZES if args.smoke else SIZES).items() if k in args.sizes}
    for size in sizes.values():
        size.update({k: v for k, v in (("steps", args.steps), ("warmup", args.warmup)) if v is not None})
    with tempfile.TemporaryDirectory(prefix="meddata-bench-") as tmp:
        work = Path(tmp)
        build, models = prepare(work, sizes, args.seed)
        print(f"setup {time.perf_counter() - t_start:.0f}s: quickstart build {build}; device "
              f"{torch.cuda.get_device_name(0) if cuda else 'cpu'}", flush=True)
        sp = meddata_speed(cuda)
        print("meddata speed: auto resolves to:")
        for name, c in sp.items():
            print(f"    {name:<19}{str(c.value):<20}{c.why}")
        results: dict[str, dict[str, dict]] = {s: {} for s in sizes}
        order = [(s, arm) for s, arm in PRIORITY if s in sizes and arm in args.arms]
        for size, arm in order:
            left = args.budget - (time.perf_counter() - t_start)
            if left < 30:
                results[size][arm] = {"error": "skipped: time budget spent"}
                continue
            s = sizes[size]
            a = {"size": size, "arm": arm, "build": str(build), "model": str(models[size]), "work": str(work),
                 "seed": args.seed, "log_every": min(5, s["steps"]), **s}
            print(f"[{time.perf_counter() - t_start:5.0f}s] {size} {arm} ...", flush=True)
            results[size][arm] = run_arm(a) if args.in_process else _child(a, left - 10)
            _print_arm(size, arm, results[size][arm])
            left = args.budget - (time.perf_counter() - t_start)
            if arm == "meddata" and results[size][arm].get("error") and left > 60:
                print(f"    retrying meddata with speed {SAFE_SPEED}", flush=True)
                a = {**a, "arm": "meddata_safe"}
                results[size]["meddata_safe"] = run_arm(a) if args.in_process else _child(a, left - 10)
                _print_arm(size, "meddata_safe", results[size]["meddata_safe"])
        checks = _optional_checks(args, sizes, build, models, work, results, t_start, cuda)
    report = _report(results, sizes, args)
    report["checks"] = checks
    report["total_s"] = round(time.perf_counter() - t_start, 1)
    print(f"\ntotal {report['total_s']:.0f}s (budget {args.budget}s)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=str))
        print(f"results: {args.json}")
    return report


def _optional_checks(args, sizes, build, models, work, results, t_start, cuda) -> dict:
    """QLoRA training and ``meddata eval`` on the trained 105m model, when time is left."""
    checks: dict[str, Any] = {}
    if "105m" not in sizes or args.smoke:
        return checks
    s = sizes["105m"]
    if args.qlora and cuda and args.budget - (time.perf_counter() - t_start) > 70:
        a = {"size": "105m", "arm": "qlora", "build": str(build), "model": str(models["105m"]), "work": str(work),
             "seed": args.seed, "log_every": 5, **{**s, "steps": 15, "warmup": 3}}
        print(f"[{time.perf_counter() - t_start:5.0f}s] 105m qlora ...", flush=True)
        checks["qlora"] = _child(a, args.budget - (time.perf_counter() - t_start) - 10)
        _print_arm("105m", "qlora", checks["qlora"])
    run_dir = results["105m"].get("meddata", {}).get("run_dir")
    left = args.budget - (time.perf_counter() - t_start)
    if args.eval and run_dir and left > 45:
        cmd = [sys.executable, "-m", "meddata.cli", "eval", "--run", run_dir, "--bench", f"medqa={EVAL_SET}",
               "--limit", "20", "--out", str(work / "eval")]
        t0 = time.perf_counter()
        try:
            # cwd outside the repository: its meddata/ folder would shadow the installed package
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=left - 10, cwd=work)
            checks["eval"] = {"exit": proc.returncode, "wall_s": round(time.perf_counter() - t0, 1),
                              "tail": proc.stdout.strip().splitlines()[-6:] if proc.stdout else proc.stderr[-800:]}
        except subprocess.TimeoutExpired:
            checks["eval"] = {"exit": None, "error": "timed out"}
        print(f"meddata eval on the GPU: {json.dumps(checks['eval'])[:600]}", flush=True)
    return checks


def _fmt(value: Any, spec: str, missing: str = "-") -> str:
    return missing if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def _print_arm(size: str, arm: str, r: dict) -> None:
    if r.get("error"):
        print(f"    {size} {arm}: FAILED {r['error']}", flush=True)
        return
    mfu = _fmt(r.get("mfu"), ".1%", "n/a")
    print(f"    {size} {arm}: {_fmt(r.get('tokens_per_s'), ',.0f')} tokens/s, MFU {mfu}, peak "
          f"{_fmt(r.get('peak_memory_gib'), '.2f')} GiB, loss after {r.get('steps')} steps {_fmt(r.get('loss'), '.4f')}, "
          f"{r.get('wall_s')}s  [{r.get('settings', '')}]", flush=True)


def _ratio(a: Any, b: Any) -> float | None:
    return a / b if isinstance(a, int | float) and isinstance(b, int | float) and b else None


def _report(results: dict, sizes: dict, args: argparse.Namespace) -> dict:
    out: dict[str, Any] = {"smoke": args.smoke, "sizes": sizes, "results": results, "ratios": {}, "goals": {}}
    for size, arms in results.items():
        s = sizes[size]
        print(f"\n{size}: Llama {s['layers']}x{s['hidden']}, batch {s['batch']} x {s['seq']}, "
              f"{s['steps']} steps ({s['warmup']} untimed)")
        print(f"{'arm':<11}{'tokens/s':>12}{'x trl':>8}{'MFU':>8}{'peak GiB':>10}{'x trl':>7}{'loss':>9}{'Δloss':>8}")
        base = arms.get("trl", {})
        for arm in ARMS:
            r = arms.get(arm)
            if r is None:
                continue
            if r.get("error"):
                print(f"{arm:<11}  {r['error']}")
                continue
            speed = _ratio(r.get("tokens_per_s"), base.get("tokens_per_s"))
            mem = _ratio(r.get("peak_memory_gib"), base.get("peak_memory_gib"))
            dloss = None if r.get("loss") is None or not base.get("loss") else (r["loss"] - base["loss"]) / base["loss"]
            out["ratios"].setdefault(size, {})[arm] = {"tokens_per_s": speed, "peak_memory": mem, "loss_rel": dloss}
            print(f"{arm:<11}{_fmt(r.get('tokens_per_s'), ',.0f'):>12}{_fmt(speed, '.2f'):>8}"
                  f"{_fmt(r.get('mfu'), '.1%', 'n/a'):>8}{_fmt(r.get('peak_memory_gib'), '.2f'):>10}"
                  f"{_fmt(mem, '.2f'):>7}{_fmt(r.get('loss'), '.4f'):>9}{_fmt(dloss, '+.2%'):>8}")
    md = {size: out["ratios"].get(size, {}).get("meddata", {}) for size in results}
    goals = out["goals"]
    if "105m" in md:
        goals["105m meddata/trl tokens/s >= 3x"] = _goal(md["105m"].get("tokens_per_s"), lambda v: v >= 3.0)
    if "1b" in results:
        goals["1b meddata MFU >= 35%"] = _goal(results["1b"].get("meddata", {}).get("mfu"), lambda v: v >= 0.35)
    for size in results:
        goals[f"{size} meddata peak memory <= trl"] = _goal(md[size].get("peak_memory"), lambda v: v <= 1.0)
        goals[f"{size} meddata loss within 2% of trl"] = _goal(md[size].get("loss_rel"), lambda v: abs(v) <= 0.02)
    print("\nacceptance" + ("  [smoke run on tiny models: not a measurement]" if args.smoke else ""))
    for name, verdict in goals.items():
        print(f"  {name:<40}{verdict}")
    return out


def _goal(value: float | None, test) -> str:
    if value is None:
        return "not measured"
    return f"{'met' if test(value) else 'NOT met'} ({value:.3g})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny models, a few steps, CPU allowed, in one process")
    p.add_argument("--sizes", default="105m,1b", help="comma-separated: 105m, 1b")
    p.add_argument("--arms", default=",".join(ARMS[:3]), help="comma-separated: " + ", ".join(ARMS[:3]))
    p.add_argument("--budget", type=float, default=450, help="seconds for the whole run; arms that do not fit are "
                                                             "skipped (default 450: within 8 minutes)")
    p.add_argument("--no-qlora", dest="qlora", action="store_false", help="skip the QLoRA check")
    p.add_argument("--no-eval", dest="eval", action="store_false", help="skip the meddata eval check")
    p.add_argument("--in-process", action="store_true", help="run arms in this process (default with --smoke)")
    p.add_argument("--steps", type=int, help="optimizer steps per arm (default per size: 50 / 20; smoke 4)")
    p.add_argument("--warmup", type=int, help="steps left out of the timing (default per size: 5 / 4; smoke 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="write the results here as JSON too")
    p.add_argument("--arm-json", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.arm_json:
        print("RESULT " + json.dumps(run_arm(json.loads(args.arm_json)), default=str), flush=True)
        return 0
    args.sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    args.arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = sorted(set(args.sizes) - set(SIZES)) + sorted(set(args.arms) - set(ARMS[:3]))
    if unknown:
        p.error(f"unknown size/arm {unknown}")
    missing, _ = package_report()
    if missing:
        print(f"cannot run: {', '.join(missing)} missing. Carry the wheels from benchmarks/gpu_wheels.sh, then "
              "pip install --no-deps --no-index .whl/*.whl", file=sys.stderr)
        return 2
    import torch

    if not args.smoke and not torch.cuda.is_available():
        print("train_gpu.py measures GPU training and needs a CUDA GPU; none is visible here "
              "(torch.cuda.is_available() is False). Use --smoke to check the script on CPU.", file=sys.stderr)
        return 2
    if args.smoke:
        args.in_process = True
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
