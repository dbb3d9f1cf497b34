"""The evaluation report: JSON for machines, a Markdown table for people.

One row per benchmark x mode x metric (plus per-subject rows for MMLU), one column per
model, each with its item count and 95 % interval (Wilson for accuracies, bootstrap for
means), and for every model after the first the paired difference to that baseline.
Reports hold scores and item counts only, never prompts or answers.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from meddata.trainers import stats
from meddata.trainers.evaluate import BenchResult, EvalRun

PROPORTIONS = {"acc", "acc_norm"}  # 0/1 per item -> Wilson interval
METRIC_ORDER = {"acc": 0, "acc_norm": 1, "rougeL": 2, "score": 3, "win_rate": 4}


def _summary(values: list[float], metric: str, seed: int) -> dict[str, Any]:
    vals = [v for v in values if not math.isnan(v)]
    n = len(vals)
    mean = sum(vals) / n if n else math.nan
    if metric in PROPORTIONS:
        correct = int(round(sum(vals)))
        lo, hi = stats.wilson(correct, n)
        return {"n": n, "value": mean, "ci95": [lo, hi], "correct": correct, "ci_method": "wilson"}
    lo, hi = stats.bootstrap_mean(vals, seed=seed)
    out = {"n": n, "value": mean, "ci95": [lo, hi], "ci_method": "bootstrap"}
    if len(vals) != len(values):
        out["missing"] = len(values) - len(vals)
    return out


def _paired(base: BenchResult, other: BenchResult, metric: str, keep: list[int], seed: int) -> dict[str, Any]:
    pos = {item: i for i, item in enumerate(other.item_ids)}
    a, b = [], []
    for i in keep:
        j = pos.get(base.item_ids[i])
        if j is None:
            continue
        x, y = base.scores[metric][i], other.scores[metric][j]
        if not (math.isnan(x) or math.isnan(y)):
            a.append(x)
            b.append(y)
    diff, lo, hi = stats.paired_bootstrap_diff(a, b, seed=seed)
    return {"delta": diff, "delta_ci95": [lo, hi], "paired_n": len(a)}


def build(run: EvalRun) -> dict[str, Any]:
    """The report as a JSON-ready dict."""
    names = list(run.models)
    baseline = names[0]
    seed = run.config.seed
    groups: dict[tuple[str, str], dict[str, BenchResult]] = {}
    for res in run.results:
        groups.setdefault((res.benchmark, res.mode), {})[res.model] = res
    rows: list[dict[str, Any]] = []
    for (bench, mode), by_model in groups.items():
        any_res = next(iter(by_model.values()))
        subsets: list[tuple[str, list[int]]] = [(bench, list(range(len(any_res.item_ids))))]
        subjects = sorted({s for s in any_res.subjects if s})
        if len(subjects) > 1:  # MMLU: one row per subject as well
            subsets += [(f"{bench}/{s}", [i for i, x in enumerate(any_res.subjects) if x == s]) for s in subjects]
        for metric in sorted(any_res.scores, key=lambda m: METRIC_ORDER.get(m, 9)):
            for label, keep in subsets:
                row: dict[str, Any] = {"benchmark": label, "mode": mode, "metric": metric, "models": {}}
                for name in names:
                    res = by_model.get(name)
                    if res is None:
                        continue
                    idx = keep if res is any_res else _same_items(any_res, res, keep)
                    entry = _summary([res.scores[metric][i] for i in idx], metric, seed)
                    entry.update({k: v for k, v in res.extra.items() if label == bench})
                    base_res = by_model.get(baseline)
                    if name != baseline and base_res is not None and mode != "judge_pairwise":
                        entry.update(_paired(base_res, res, metric, _same_items(any_res, base_res, keep), seed))
                    row["models"][name] = entry
                rows.append(row)
    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "baseline": baseline,
        "models": run.models,
        "settings": run.config.model_dump(mode="json", exclude={"models", "judge"}),
        "rows": rows,
        "judge": {k: v for k, v in run.judge.items() if k != "results"},
    }


def _same_items(ref: BenchResult, other: BenchResult, keep: list[int]) -> list[int]:
    pos = {item: i for i, item in enumerate(other.item_ids)}
    return [pos[ref.item_ids[i]] for i in keep if ref.item_ids[i] in pos]


def _fmt(entry: dict[str, Any], metric: str) -> str:
    if entry["n"] == 0 or math.isnan(entry["value"]):
        return "–"
    scale = 100 if metric in PROPORTIONS or metric in ("rougeL", "win_rate") else 1
    digits = 1 if scale == 100 else 2
    v, (lo, hi) = entry["value"] * scale, entry["ci95"]
    text = f"{v:.{digits}f} [{lo * scale:.{digits}f}, {hi * scale:.{digits}f}]"
    if "delta" in entry:
        d, (dlo, dhi) = entry["delta"] * scale, entry["delta_ci95"]
        text += f" (Δ {d:+.{digits}f} [{dlo * scale:+.{digits}f}, {dhi * scale:+.{digits}f}])"
    if entry.get("unparsed"):
        text += f" ({entry['unparsed']} unparsed)"
    return text


def markdown(report: dict[str, Any]) -> str:
    names = list(report["models"])
    lines = [
        "# Evaluation report",
        "",
        f"Baseline: **{report['baseline']}**. Accuracy, ROUGE-L and win rate in %, judge scores 1-10; "
        "brackets: 95 % interval (Wilson for accuracy, bootstrap otherwise); Δ: paired difference to the "
        "baseline on the same items.",
        "",
        "| benchmark | mode | metric | n | " + " | ".join(names) + " |",
        "|---|---|---|---|" + "---|" * len(names),
    ]
    for row in report["rows"]:
        ns = {e["n"] for e in row["models"].values()}
        cells = [_fmt(row["models"][m], row["metric"]) if m in row["models"] else "" for m in names]
        lines.append(f"| {row['benchmark']} | {row['mode']} | {row['metric']} | "
                     f"{'/'.join(str(n) for n in sorted(ns))} | " + " | ".join(cells) + " |")
    judge = report.get("judge") or {}
    if judge:
        lines += ["", f"LLM judge: {judge.get('status', '')}"
                  + (f" ({judge['mode']}, {judge.get('failed', 0)} judgment(s) failed)" if "mode" in judge else "")]
    lines += ["", "Models:", *[f"- {name}: `{path}`" for name, path in report["models"].items()]]
    return "\n".join(lines) + "\n"


def write(report: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    js, md = out_dir / "report.json", out_dir / "report.md"
    js.write_text(json.dumps(to_json_safe(report), indent=2, allow_nan=False), encoding="utf-8")
    md.write_text(markdown(report), encoding="utf-8")
    return js, md


def to_json_safe(obj: Any) -> Any:
    """NaN -> None recursively (JSON has no NaN)."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: to_json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_json_safe(v) for v in obj]
    return obj
