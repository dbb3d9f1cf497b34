"""Parse rate of JSON generations by the local model, with and without constrained decoding.

Runs the same two LLM steps (``passage_qa`` on OpenStax passages, ``mcq_rationale`` on
MedMCQA items) twice through ``meddata build`` with the transformers backend and
``smollm2-135m-instruct``: once with ``response_format: none`` (the baseline: the prompt alone
asks for JSON) and once with schema-constrained decoding (the default). Prints, per arm, the
share of first answers that were schema-valid JSON, the share valid after the client's one
repair turn, and the quarantine reasons. No cache, so both arms really generate.

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


def recipe(arm: str, out: Path) -> dict:
    fmt = "none" if arm == "prompt_only" else "auto"
    return {
        "name": f"parse-rate-{arm}",
        "llms": {"local": {"backend": "transformers", "model_path": "smollm2-135m-instruct", "batch_size": 8,
                           "cache": False, "response_format": fmt}},
        "inputs": [
            {"builder": "table", "path": str(ROOT / "examples/data/augment/passages.jsonl"), "source": "openstax-ap2e",
             "licence": "CC-BY-NC-SA-4.0", "columns": {"id": "id", "text": "text"}},
            {"builder": "exam", "path": str(ROOT / "examples/data/augment/medmcqa_sample.jsonl"), "format": "medmcqa",
             "licence": "MIT"},
        ],
        "steps": [{"passage_qa": {"llm": "local", "per_passage": 2, "max_tokens": 256}},
                  {"mcq_rationale": {"llm": "local", "max_tokens": 200}}],
        "output": {"path": str(out / arm), "formats": ["jsonl"], "card": False},
    }


def run_arm(arm: str, out: Path, limit: int) -> dict:
    import yaml

    path = out / f"{arm}.yaml"
    path.write_text(yaml.safe_dump(recipe(arm, out), sort_keys=False))
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "meddata.cli", "build", str(path), "--limit", str(limit)], capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    stats = json.loads((out / arm / "stats.json").read_text())
    steps = {s["name"]: s for s in stats["steps"]} if isinstance(stats.get("steps"), list) else stats.get("steps", {})
    per_step = {}
    for name in ("passage_qa", "mcq_rationale"):
        s = steps.get(name, {})
        c = s.get("counters", {})
        requests = c.get("llm.requests", 0)
        invalid_final = c.get("llm.invalid_output", 0)
        repairs = c.get("llm.repairs", c.get("llm.repair_requests", None))
        per_step[name] = {"requests": requests, "invalid_after_repair": invalid_final, "repairs": repairs,
                          "quarantined": s.get("quarantined", 0)}
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
        for name, s in r["steps"].items():
            n = s["requests"]
            ok = n - s["invalid_after_repair"]
            print(f"  {name}: {n} requests, schema-valid after repair {ok}/{n} ({100 * ok / max(n, 1):.0f}%), "
                  f"quarantined rows {s['quarantined']}, repair turns {s['repairs']}")
        for reason, k in r["quarantine_reasons"].items():
            print(f"    quarantined x{k}: {reason}")
    (out / "summary.json").write_text(json.dumps(results, indent=2))
    print(f"summary: {out / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
