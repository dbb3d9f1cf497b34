"""``meddata eval``: benchmark accuracy and free-text scores, base vs fine-tuned."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from meddata.cli import CliError
from meddata.cli._extras import needs_extras

EPILOG = """\
examples:
  meddata eval --run out/train/cardio --bench medqa=data/medqa_test.jsonl --bench pubmedqa=ori_pqal.json
  meddata eval --model base=meta-llama/Llama-3.2-1B --model sft=out/train/x/sft/model \\
      --bench mmlu=mmlu-medical/test --shots 5 --mode loglik --mode generate --out reports/x
  meddata eval examples/train/eval.yaml
  meddata eval --model base=Qwen/Qwen2.5-0.5B --model sft=out/train/x/sft/model --bench medqa=test.jsonl \\
      --prompt-from out/medqa-train      # ask in the words the training set used

MCQ items are asked with the prompt mcq_instruction trains on (meddata.exams), and every model
in the same format: with chat auto, a base model without a chat template borrows the tuned
model's (the report's settings say which: chat, chat_template_from, prompt).

Benchmarks named medqa, medmcqa, pubmedqa or mmlu use that exam format; other names are
detected from the file. The first model is the baseline the others are compared with.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate models on medical benchmarks (MCQ accuracy, ROUGE-L, LLM judge)",
                       description="Score models on MedQA, MedMCQA, PubMedQA, MMLU medical subsets and free-text "
                                   "sets; write report.json and report.md with 95 % intervals.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", nargs="?", help="eval config YAML (optional; flags add to or override it)")
    p.add_argument("--model", action="append", default=[], metavar="NAME=PATH",
                   help="a model folder (full weights or LoRA adapter) or Hub id; repeat; the first is the baseline")
    p.add_argument("--run", metavar="DIR", help="a `meddata train` output folder: adds its base and final model")
    p.add_argument("--bench", action="append", default=[], metavar="NAME=PATH",
                   help="an MCQ benchmark file or folder (medqa, medmcqa, pubmedqa, mmlu); repeat")
    p.add_argument("--freetext", action="append", default=[], metavar="NAME=PATH",
                   help="a free-text set scored with ROUGE-L: an exam file with long answers or a dataset")
    p.add_argument("--mode", action="append", choices=["loglik", "generate"],
                   help="MCQ scoring: option log-likelihood and/or generate-then-parse (default loglik)")
    p.add_argument("--shots", type=int, help="k-shot examples per prompt")
    p.add_argument("--limit", type=int, help="score at most N items per benchmark")
    p.add_argument("--chat", choices=["auto", "always", "never"], help="wrap prompts in the chat template")
    p.add_argument("--continuation", choices=["label", "text"], help="loglik scores option labels or texts")
    p.add_argument("--prompt", choices=["instruction", "completion"],
                   help="MCQ prompt: the one meddata trains with (default) or 'Question: ... Answer:'")
    p.add_argument("--prompt-from", metavar="BUILD",
                   help="the training set's build folder (or its stats.json / README.md): ask in its prompt")
    p.add_argument("--max-new-tokens", type=int, help="generation length for generate-then-parse (default 32)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--out", help="report folder (default: the config's out, else out/eval)")
    p.set_defaults(func=cmd_eval)


def _pairs(values: list[str], flag: str) -> list[tuple[str, str]]:
    out = []
    for v in values:
        name, sep, path = v.partition("=")
        if not sep or not name or not path:
            raise CliError(f"{flag} expects NAME=PATH, got {v!r}")
        out.append((name, path))
    return out


def build_config(args: argparse.Namespace) -> tuple[Any, Path]:
    from meddata.trainers import eval_config, stages

    data: dict[str, Any] = {}
    base_dir = Path.cwd()
    if args.config:
        cfg, base_dir = eval_config.load(args.config)
        data = cfg.model_dump(mode="json", exclude_unset=True)
    models: dict[str, str] = dict(data.get("models", {}))
    if args.run:
        run = stages.load_run(args.run)
        models.setdefault("base", run["base_model"])
        models.setdefault("tuned", run["final_model"])
    for name, path in _pairs(args.model, "--model"):
        models[name] = str(Path(path).resolve()) if Path(path).exists() else path
    benches = list(data.get("benchmarks", []))
    for name, path in _pairs(args.bench, "--bench"):
        benches.append({"name": name, "path": str(Path(path).resolve())})
    for name, path in _pairs(args.freetext, "--freetext"):
        benches.append({"name": name, "path": str(Path(path).resolve()), "task": "freetext"})
    if args.shots is not None or args.limit is not None:
        benches = [{**b, **({"shots": args.shots} if args.shots is not None and b.get("task") != "freetext" else {}),
                    **({"limit": args.limit} if args.limit is not None else {})} for b in benches]
    data.update({"models": models, "benchmarks": benches})
    if args.prompt_from:
        data["prompt_from"] = str(Path(args.prompt_from).resolve())
    for key, value in (("modes", args.mode), ("chat", args.chat), ("continuation", args.continuation),
                       ("prompt", args.prompt),
                       ("batch_size", args.batch_size), ("max_new_tokens", args.max_new_tokens)):
        if value:
            data[key] = value
    if not models:
        raise CliError("no models: give --model NAME=PATH (repeat for base and tuned) or --run DIR")
    if not benches:
        raise CliError("no benchmarks: give --bench NAME=PATH or --freetext NAME=PATH, or a config")
    cfg, _ = eval_config.from_dict(data, source=args.config or "command line", base_dir=base_dir)
    return cfg, base_dir


@needs_extras
def cmd_eval(args: argparse.Namespace) -> int:
    from meddata.trainers import evaluate, report
    cfg, base_dir = build_config(args)  # config errors are UserErrors: one line, exit 2
    out = Path(args.out) if args.out else (base_dir / cfg.out if cfg.out else Path("out") / "eval")
    run = evaluate.evaluate(cfg, base_dir, out)
    rep = report.build(run)
    js, md = report.write(rep, out)
    print(md.read_text(encoding="utf-8"))
    print(f"prompts:     {evaluate.prompt_format(run.config)}")
    print(f"report:      {js}\nmarkdown:    {md}\npredictions: {run.predictions_dir}")
    return 0
