"""Parse rate of JSON generations by the local model, with and without constrained decoding.

Runs the same two LLM steps (``passage_qa`` on OpenStax passages, ``mcq_rationale`` on
MedMCQA items) twice through ``meddata build`` with the transformers backend and
``smollm2-135m-instruct``: once with ``response_format: none`` (the baseline: the prompt alone
asks for JSON) and once with schema-constrained decoding (the default). The recipe is the LLM part of
``examples/recipes/augment_local.yaml``. Prints, per arm, the share of answers that were
schema-valid JSON after the client's one repair turn, and the quarantine reasons; exits 1 if the
constrained build failed or either arm stopped before writing its stats. No cache, so both arms really generate.

    python benchmarks/structured_parse_rate.py [--limit 8] [--out /tmp/parse_rate]

Needs the model fetched once: ``meddata models fetch smollm2-135m-instruct``.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "recipes" / "augment_local.yaml"
GENERATED_FROM = ("openstax-ap2e", "medmcqa")  # the example's inputs the two LLM steps work on


def recipe(arm: str, out: Path) -> dict:
    """The example recipe's LLM part (its passage and MCQ inputs, its steps), uncached, with
    constrained decoding on or off. The baseline is allowed to quarantine everything: measuring
    that is its point, so the build's quarantine-rate guard must not stop it."""
    import yaml

    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    data["name"] = f"parse-rate-{arm}"
    data["llms"]["local"].update(cache=False, response_format="none" if arm == "prompt_only" else "auto")
    data["inputs"] = [{**i, "path": str((EXAMPLE.parent / i["path"]).resolve())} for i in data["inputs"]
                      if i.get("source", i.get("format")) in GENERATED_FROM]
    data["output"] = {"path": str(out / arm), "formats": ["jsonl"], "card": False,
                      "max_quarantine_rate": 1.0 if arm == "prompt_only" else 0.5}
    return data


def run_arm(arm: str, out: Path, limit: int) -> dict:
    import yaml

    path = out / f"{arm}.yaml"
    path.write_text(yaml.safe_dump(recipe(arm, out), sort_keys=False))
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "meddata.cli", "build", str(path), "--limit", str(limit)],
                          capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    stats_path = out / arm / "stats.json"
    if not stats_path.exists():  # the build stopped before it could account for anything
        return {"arm": arm, "rc": proc.returncode, "seconds": round(seconds, 1), "error": proc.stderr.strip()[-500:]}
    steps = {s["name"]: s for s in json.loads(stats_path.read_text())["steps"]}
    per_step = {name: {"requests": steps[name]["counters"].get("llm.requests", 0),
                       "invalid_after_repair": steps[name]["counters"].get("llm.invalid_output", 0),
                       "quarantined": steps[name]["quarantined"]}
                for name in ("passage_qa", "mcq_rationale")}
    reasons: collections.Counter = collections.Counter()
    qfile = out / arm / "quarantine.jsonl"
    if qfile.exists():
        for line in qfile.read_text().splitlines():
            err = json.loads(line).get("error", "")
            m = re.search(r"unusable LLM answer: ([^;]*)", err)
            reasons[(m.group(1) if m else err)[:90]] += 1
    return {"arm": arm, "rc": proc.returncode, "seconds": round(seconds, 1), "steps": per_step,
            "quarantine_reasons": dict(reasons.most_common())}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=8, help="rows per input (passages, MCQs)")
    ap.add_argument("--out", default="/tmp/meddata_parse_rate")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = [run_arm(arm, out, args.limit) for arm in ("prompt_only", "constrained")]
    for r in results:
        print(f"== {r['arm']}: exit {r['rc']}, {r['seconds']} s")
        if "error" in r:
            print(f"  the build failed before accounting: {r['error']}")
            continue
        for name, s in r["steps"].items():
            n = s["requests"]
            ok = n - s["invalid_after_repair"]
            print(f"  {name}: {n} requests, schema-valid after repair {ok}/{n} ({100 * ok / max(n, 1):.0f}%), "
                  f"quarantined rows {s['quarantined']}")
        for reason, k in r["quarantine_reasons"].items():
            print(f"    quarantined x{k}: {reason}")
    (out / "summary.json").write_text(json.dumps(results, indent=2))
    print(f"summary: {out / 'summary.json'}")
    # The baseline may end with 0 rows (every answer unusable: that is the measurement); the
    # constrained arm is the product and must build, and both must have been accounted.
    return 1 if any("error" in r for r in results) or results[-1]["rc"] else 0


if __name__ == "__main__":
    sys.exit(main())
