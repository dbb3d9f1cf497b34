"""Before/after check for refactors: build every example recipe that needs no GPU and no LLM
with two checkouts and compare what they wrote, file by file.

    python benchmarks/example_outputs_diff.py --before /tmp/base --out /tmp/cmp

``--before`` is a plain copy of the old tree (``git archive REV | tar -x -C /tmp/base``); its
``builders``/``filters``/``trainers`` folders are linked under its ``meddata/`` so the old code
imports as ``meddata.*`` ahead of the editable install. "After" is this checkout, run through
the installed (editable) package. Data files (jsonl, exports, Arrow
shards, quarantine and drop logs) must be byte-identical; the dataset card, ``stats.json``
and ``state.json`` carry times, absolute paths and fingerprints, so they are listed apart.
For QA rows that differ, the first differing message of each row is printed (trimmed).
Exit 1 when a data file differs and ``--allow`` does not name its recipe.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import subprocess
import sys
from pathlib import Path

RECIPES = ("curation", "dialogue", "ehr_notes", "exam", "fhir", "kg", "mixture", "qa_site", "quickstart",
           "templates", "textbook")
VOLATILE = {"README.md", "stats.json", "state.json"}


def build_all(src: Path, out: Path, copy: bool) -> None:
    """Build every recipe from ``src``; a copied tree (``copy``) is put ahead of the install."""
    src = src.resolve()
    env = dict(os.environ)
    if copy:
        for name in ("builders", "filters", "trainers"):
            link = src / "meddata" / name
            if not link.exists():
                link.symlink_to(Path("..") / name)
        env["PYTHONPATH"] = str(src)
    for recipe in RECIPES:
        target = out / recipe
        done = subprocess.run([sys.executable, "-m", "meddata", "build", f"examples/recipes/{recipe}.yaml",
                               "--out", str(target)], cwd=src, env=env, capture_output=True, text=True)
        print(f"{src.name}: {recipe} exit {done.returncode}")
        if done.returncode:
            print(done.stderr[-2000:])


def data_files(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*") if p.is_file() and ".work" not in p.parts}


def show_row_changes(a: Path, b: Path, limit: int) -> int:
    old = [json.loads(line) for line in a.open()]
    new = [json.loads(line) for line in b.open()]
    print(f"    rows {len(old)} -> {len(new)}")
    changed = 0
    for x, y in zip(old, new):
        if x == y:
            continue
        changed += 1
        if changed > limit:
            continue
        for m, n in zip(x.get("messages") or [], y.get("messages") or []):
            if m != n:
                print(f"    {x.get('source')} {x['meta']['locator']}:\n      - {m['content'][-160:]!r}\n"
                      f"      + {n['content'][-160:]!r}")
                break
    print(f"    {changed} row(s) differ")
    return changed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path("/tmp/example_outputs"))
    ap.add_argument("--allow", nargs="*", default=["qa_site"], help="recipes whose data may change")
    ap.add_argument("--examples", type=int, default=8, help="changed rows shown per file")
    args = ap.parse_args()
    build_all(args.before, args.out / "before", copy=True)
    build_all(Path(__file__).resolve().parents[1], args.out / "after", copy=False)
    failed = False
    for recipe in RECIPES:
        a, b = args.out / "before" / recipe, args.out / "after" / recipe
        fa, fb = data_files(a), data_files(b)
        same, volatile, differ = 0, [], []
        for rel in sorted(fa | fb):
            if rel not in fa or rel not in fb:
                differ.append(f"{rel} (only {'after' if rel in fb else 'before'})")
            elif filecmp.cmp(a / rel, b / rel, shallow=False):
                same += 1
            elif rel.name in VOLATILE:
                volatile.append(str(rel))
            else:
                differ.append(str(rel))
        status = "identical" if not differ else ("CHANGED (allowed)" if recipe in args.allow else "CHANGED")
        print(f"{recipe}: {status}; {same} file(s) identical, {len(volatile)} with times/paths/fingerprints")
        for rel in differ:
            print(f"  differs: {rel}")
            if rel.endswith("train.jsonl") and rel.startswith("jsonl"):
                show_row_changes(a / rel, b / rel, args.examples)
        failed |= bool(differ) and recipe not in args.allow
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
