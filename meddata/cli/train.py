"""``meddata train CONFIG.yaml``: continued pretraining, SFT and DPO stages with TRL."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from meddata.cli import CliError
from meddata.cli._extras import needs_extras

EPILOG = """\
The whole config (every stage's dataset type, QLoRA/precision vs the hardware, TRL
argument names, the chat template, the Hub token) is checked before any model loads.
Each stage's speed settings (the config's `speed:` section, `auto` by default: bf16
weights, flex/flash attention, fused AdamW, compiled layers and DataLoader workers on a
GPU; fp32 and no compile on CPU) are printed with the reason for each choice; --check
stops there.

Multi-GPU: write an accelerate config from the config's `distributed:` section, then launch:
  meddata train run.yaml --accelerate-config accelerate.yaml
  accelerate launch --config_file accelerate.yaml -m meddata.cli train run.yaml
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="fine-tune a model on built datasets (TRL: pretrain, SFT, DPO)",
                       description="Run the stages of a training config (continued pretraining, SFT, DPO), "
                                   "each starting from the previous stage's output.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="training config YAML (see examples/train/)")
    p.add_argument("--check", action="store_true", help="validate the config and datasets, then stop")
    p.add_argument("--out", help="output folder (overrides output_dir in the config)")
    p.add_argument("--fresh", action="store_true",
                   help="ignore finished stages and checkpoints of an earlier run (resume: false)")
    p.add_argument("--accelerate-config", metavar="PATH",
                   help="write an accelerate config for the `distributed:` section and print the launch command")
    p.set_defaults(func=cmd_train)


@needs_extras
def cmd_train(args: argparse.Namespace) -> int:
    from meddata.trainers import config as train_config
    from meddata.trainers import distributed

    try:
        loaded = train_config.load(args.config)
        updates: dict = {}
        if args.out:  # relative to the working directory, not to the config file
            updates["output_dir"] = str(Path(args.out).expanduser().resolve())
        if args.fresh:
            updates["resume"] = False
        if updates:
            loaded.config = loaded.config.model_copy(update=updates)
        if args.accelerate_config:
            path = distributed.write_accelerate_config(loaded.config, args.accelerate_config)
            print(f"accelerate config: {path}")
            print(distributed.launch_command(path, args.config))
            return 0
        return _run(loaded, check_only=args.check)
    except ValueError as exc:  # TrainConfigError is a UserError and passes through
        raise CliError(str(exc)) from None


def _run(loaded, check_only: bool) -> int:
    from meddata.trainers import speed, stages, validate

    plan = validate.validate(loaded)
    speeds = speed.resolve_plan(plan)
    hw = plan.hardware
    print(f"{loaded.source}: ok — {len(plan.stages)} stage(s), precision {plan.precision}, "
          f"device {hw.device_name}{f' x{hw.gpus}' if hw.gpus > 1 else ''}")
    for s in plan.stages:
        ev = f", eval {len(s.eval)} rows" if s.eval is not None else ""
        print(f"  stage {s.index} {s.spec.name}: {s.spec.type} on {len(s.train)} {s.kind} rows{ev}, "
              f"peft {s.spec.peft.method} -> {s.out_dir}")
        for line in speed.describe(speeds[s.index]):
            print(f"      {line}")
    if check_only:
        return 0
    logging.getLogger("meddata").info("training %s", loaded.config.name)
    result = stages.run(plan)
    for r in result.stages:
        m = r.metrics
        loss = f"loss {m['first_loss']:.4f} -> {m['last_loss']:.4f}" if "first_loss" in m else ""
        note = " (reused)" if r.skipped else ""
        print(f"  {r.name}: {loss}{_throughput(m)}{note} -> {r.output}")
    print(f"final model: {result.final_model}")
    print(f"run record:  {result.output_dir / 'run.json'}")
    if result.hub_url:
        print(f"hub:         {result.hub_url}")
    return 0


def _throughput(m: dict) -> str:
    """``, 12,345 tokens/s, MFU 41.0%`` from a stage's metrics (MFU n/a without a GPU peak)."""
    if not m.get("tokens_per_s"):
        return ""
    mfu = f"MFU {m['mfu']:.1%}" if m.get("mfu") is not None else "MFU n/a (no GPU)"
    return f", {m['tokens_per_s']:,.0f} tokens/s, {mfu}"
