"""``meddata build`` and ``meddata validate``."""

from __future__ import annotations

import argparse
import logging


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("build", help="run a recipe and write the dataset",
                       description="Run a recipe: read inputs, apply steps, write the dataset, stats and logs.")
    p.add_argument("recipe", help="recipe YAML file")
    p.add_argument("--out", help="output folder (default: the recipe's output.path or out/<name>)")
    p.add_argument("--num-proc", type=int, help="worker processes for row-level steps")
    p.add_argument("--limit", type=int, help="read at most N records per input (quick trials)")
    p.add_argument("--engine", help="execution engine: local (default) or ray")
    p.add_argument("--address", help="with --engine ray: the cluster to join ('auto' = the one this machine "
                                     "belongs to, or HOST:PORT); default: start a local one")
    p.set_defaults(func=cmd_build)

    v = sub.add_parser("validate", help="check a recipe without running it",
                       description="Load a recipe and validate every input, step and parameter.")
    v.add_argument("recipe", help="recipe YAML file")
    v.set_defaults(func=cmd_validate)

def cmd_build(args: argparse.Namespace) -> int:
    from meddata import pipeline, recipe  # heavy (datasets): imported when the verb runs
    from meddata.funnel import format_funnel
    from meddata.publish import build

    rec = recipe.load(args.recipe)
    logging.getLogger("meddata").info("building %s (%d inputs, %d steps)", rec.name, len(rec.inputs), len(rec.steps))
    options = {"address": args.address} if args.address else None
    result = build(rec, args.out, num_proc=args.num_proc, limit=args.limit, engine=args.engine,
                   engine_options=options, strict=False)  # print the funnel, then fail below
    print(format_funnel(result.steps, result.totals))
    reused = [s.name for s in result.steps if s.reused]
    if reused:
        print(f"reused finished steps: {', '.join(reused)}")
    out = result.out_dir
    print(f"dataset:    {result.dataset_dir}  (datasets.load_from_disk)")
    for label, path in (("jsonl", out / "jsonl"), ("parquet", out / "parquet"), ("exports", out / "exports"),
                        ("drop log", out / "dropped"), ("quarantine", out / "quarantine.jsonl"),
                        ("stats", result.stats_path), ("card", out / "README.md")):
        if path.exists():
            print(f"{label + ':':<11} {path}")
    if result.problems:  # a build that lost its rows is not a success: one line, non-zero exit
        raise pipeline.BuildFailed(result.problems[0], result)
    return 0

def cmd_validate(args: argparse.Namespace) -> int:
    from meddata import recipe

    rec = recipe.load(args.recipe)
    print(f"{args.recipe}: ok — {len(rec.inputs)} inputs, {len(rec.steps)} steps")
    for i, b in enumerate(rec.inputs):
        print(f"  inputs[{i}] {b.name}")
    for i, s in enumerate(rec.steps):
        print(f"  steps[{i}] {s.name}")
    return 0
