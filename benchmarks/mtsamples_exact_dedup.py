"""Exact dedup on MTSamples through a real ``meddata build``: the acceptance numbers.

MTSamples (../shared/data/mtsamples/mtsamples.jsonl, 4,999 rows) files the same transcription
under several specialties. This script writes a recipe (table builder -> ``exact_dedup``),
runs it with the ``meddata build`` command, and prints what the build reports next to an
independent count of the raw file (a ``Counter`` over the transcriptions):

* rows read, empty transcriptions dropped (``empty_text``), duplicates dropped
  (``exact_duplicate``), duplicate groups, unique non-empty texts kept;
* that every line of the drop log has a reason, and every ``exact_duplicate`` line names the
  row kept in its place (``meta.annotations.duplicate_of``), which holds the same text.

    .venv/bin/python benchmarks/mtsamples_exact_dedup.py
    .venv/bin/python benchmarks/mtsamples_exact_dedup.py --write-subset tests/data/dedup/mtsamples_subset.jsonl.gz
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT.parent / "shared" / "data" / "mtsamples" / "mtsamples.jsonl"

RECIPE = """\
# Written by benchmarks/mtsamples_exact_dedup.py
name: mtsamples-exact-dedup
inputs:
  - builder: table
    path: {path}
    source: mtsamples
    licence: CC0-1.0
    columns: {{id: note_id, text: transcription}}
steps:
  - exact_dedup: {{normalize: [whitespace]}}
output:
  formats: [jsonl]
  card: false
"""


def independent_counts(path: Path) -> dict[str, int]:
    """What the raw file says, without meddata."""
    rows = [json.loads(line) for line in path.open(encoding="utf-8") if line.strip()]
    texts = [" ".join((r.get("transcription") or "").split()) for r in rows]
    non_empty = Counter(t for t in texts if t)
    return {
        "rows": len(rows),
        "empty": sum(1 for t in texts if not t),
        "unique_non_empty": len(non_empty),
        "groups_non_empty": sum(1 for c in non_empty.values() if c > 1),
        "duplicates": sum(c - 1 for c in non_empty.values()),
    }


def build(path: Path, out: Path) -> Path:
    """Run ``meddata build`` on the recipe; returns the build folder."""
    from meddata.cli import main

    recipe = out / "mtsamples_exact_dedup.yaml"
    recipe.write_text(RECIPE.format(path=json.dumps(str(path.resolve()))), encoding="utf-8")
    code = main(["build", str(recipe), "--out", str(out / "build")])
    if code != 0:
        raise SystemExit(f"meddata build exited with {code}")
    return out / "build"


def check(build_dir: Path, path: Path) -> list[str]:
    """Print the build's numbers; return the failed checks."""
    stats = json.loads((build_dir / "stats.json").read_text())
    reader, dedup = stats["steps"][0], stats["steps"][1]
    report = dedup["report"]
    drops = [json.loads(line) for f in sorted((build_dir / "dropped").glob("*.jsonl"))
             for line in f.open(encoding="utf-8")]
    kept = {r["id"]: r["text"] for f in (build_dir / "jsonl").glob("*.jsonl")
            for r in map(json.loads, f.open(encoding="utf-8"))}
    truth = independent_counts(path)
    empty = reader["dropped"].get("empty_text", 0) + dedup["dropped"].get("empty_text", 0)
    dups = dedup["dropped"].get("exact_duplicate", 0)
    print(f"rows read                      {stats['totals']['read']:>6,}   (file: {truth['rows']:,})")
    print(f"empty transcriptions dropped   {empty:>6,}   reason empty_text (file: {truth['empty']:,})")
    print(f"duplicates dropped             {dups:>6,}   reason exact_duplicate (file: {truth['duplicates']:,})")
    print(f"duplicate groups               {report['n_clusters']:>6,}   (file: {truth['groups_non_empty']:,} among "
          f"non-empty texts; {truth['groups_non_empty'] + (truth['empty'] > 1):,} counting the empty ones as one)")
    print(f"unique non-empty texts kept    {stats['totals']['out']:>6,}   (file: {truth['unique_non_empty']:,}; "
          f"{truth['unique_non_empty'] + (truth['empty'] > 0):,} distinct values counting empty)")
    failures = []
    if stats["totals"]["read"] != truth["rows"]:
        failures.append("rows read")
    if empty != truth["empty"]:
        failures.append("empty rows")
    if dups != truth["duplicates"] or report["n_clusters"] != truth["groups_non_empty"]:
        failures.append("duplicate groups")
    if stats["totals"]["out"] != truth["unique_non_empty"]:
        failures.append("unique texts")
    if any(not d.get("reason") for d in drops) or len(drops) != empty + dups:
        failures.append("drop log: a dropped row without a reason")
    for d in drops:
        if d["reason"] == "exact_duplicate":
            target = json.loads(d["meta"]["annotations"]).get("duplicate_of")
            if target not in kept or " ".join(kept[target].split()) != " ".join(d["text"].split()):
                failures.append(f"drop log: row {d['id']} does not name a kept row with its text")
                break
    print(f"drop log: {len(drops):,} lines, every one with a reason; "
          f"exact duplicates name the kept row: {'yes' if not failures else 'see failures'}")
    return failures


def write_subset(path: Path, out: Path, groups: int, singles: int, empties: int, seed: int) -> None:
    """A small real subset with known duplicate groups (short notes only), in file order."""
    rows = [json.loads(line) for line in path.open(encoding="utf-8") if line.strip()]
    by_text: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        if r.get("transcription"):
            by_text.setdefault(r["transcription"], []).append(i)
    short = [(t, idx) for t, idx in by_text.items() if len(t) < 1200]
    rng = random.Random(seed)
    dup = rng.sample([x for x in short if len(x[1]) > 1], groups)
    one = rng.sample([x for x in short if len(x[1]) == 1], singles)
    blank = rng.sample([i for i, r in enumerate(rows) if not r.get("transcription")], empties)
    chosen = sorted({i for _, idx in dup + one for i in idx} | set(blank))
    fields = ("note_id", "medical_specialty", "sample_name", "transcription")
    with gzip.open(out, "wt", encoding="utf-8") as fh:
        for i in chosen:
            fh.write(json.dumps({k: rows[i].get(k) for k in fields}, ensure_ascii=False) + "\n")
    print(f"wrote {out}: {len(chosen)} rows, {groups} duplicate groups, {singles} single notes, {empties} empty")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", type=Path, default=SOURCE, help="mtsamples.jsonl")
    ap.add_argument("--write-subset", type=Path, help="write a small test subset (JSONL.gz) and stop")
    args = ap.parse_args(argv)
    if not args.source.exists():
        print(f"{args.source} is absent; nothing measured", file=sys.stderr)
        return 2
    if args.write_subset:
        write_subset(args.source, args.write_subset, groups=40, singles=30, empties=5, seed=0)
        return 0
    with tempfile.TemporaryDirectory(prefix="mtsamples-dedup-") as tmp:
        failures = check(build(args.source, Path(tmp)), args.source)
    print("PASS" if not failures else "FAIL: " + "; ".join(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
