"""Peak memory of `meddata build` on a QA JSONL at 10k vs 100k rows (flat = streaming works).

Generates QA files from MedQuAD text (../shared/data/medquad/medquad.jsonl when present,
else the 300-pair sample in examples/data, said so in the output), builds each through the
`meddata build` CLI in a subprocess, and prints the peak RSS of that build process
(``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss``, read in a fresh helper process per run so
runs do not see each other's peak) and its peak anonymous RSS (``RssAnon`` from /proc,
sampled every 20 ms). Baseline: the same build at 10k rows. ``ru_maxrss`` also counts the
pages of the memory-mapped Arrow files that ``datasets`` touches (file-backed, reclaimable),
which grow with the dataset by design; the heap (anonymous RSS) is what streaming keeps flat.

Two readers are measured: the generic ``table`` builder on JSONL and the ``alpaca_qa``
builder on one JSON array (decoded item by item).

    .venv/bin/python benchmarks/build_memory.py            # 10k and 100k rows
    .venv/bin/python benchmarks/build_memory.py --sizes 2000 20000   # a quick run
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "medquad" / "medquad.jsonl"
SAMPLE = ROOT / "examples" / "data" / "medquad_sample.jsonl"

RECIPES = {
    "table": {"builder": "table", "columns": {"id": "qid", "user": "question", "assistant": "answer"}},
    "alpaca_qa": {"builder": "alpaca_qa"},
}


def medquad_pairs() -> tuple[list[tuple[str, str]], str]:
    src = SHARED if SHARED.exists() else SAMPLE
    note = f"MedQuAD text from {src}" if src == SHARED else \
        f"../shared/data/medquad/medquad.jsonl is absent; using the 300-pair sample {src}"
    pairs = []
    with src.open(encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            if rec.get("question") and rec.get("answer"):
                pairs.append((rec["question"], rec["answer"]))
    return pairs, note


def write_inputs(folder: Path, pairs: list[tuple[str, str]], n: int) -> dict[str, Path]:
    """The same n QA pairs as JSONL (table) and as one JSON array (alpaca_qa)."""
    jsonl, array = folder / f"qa_{n}.jsonl", folder / f"qa_{n}.json"
    with jsonl.open("w", encoding="utf-8") as fj, array.open("w", encoding="utf-8") as fa:
        fa.write("[\n")
        for i, (q, a) in enumerate(itertools.islice(itertools.cycle(pairs), n)):
            fj.write(json.dumps({"qid": f"q{i}", "question": q, "answer": a}) + "\n")
            fa.write(("" if i == 0 else ",\n") + json.dumps({"instruction": "", "input": q, "output": a}))
        fa.write("\n]\n")
    return {"table": jsonl, "alpaca_qa": array}


def _anon_kib(pid: int) -> int | None:
    """Anonymous resident memory of a process (Linux /proc); None where unavailable."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def measure(recipe: Path, out: Path) -> None:
    """Helper mode: run one build as a child; print its peak RSS (getrusage of children),
    its sampled peak anonymous RSS (every 20 ms), and wall time."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, "-m", "meddata.cli", "build", str(recipe), "--out", str(out)],
                                stdout=subprocess.DEVNULL, stderr=err)
        anon = None
        while proc.poll() is None:
            sample = _anon_kib(proc.pid)
            if sample is not None:
                anon = max(anon or 0, sample)
            time.sleep(0.02)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            err.seek(0)
            sys.stderr.write(err.read().decode(errors="replace")[-3000:])
            raise SystemExit(f"build failed ({proc.returncode})")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    rows = json.loads((out / "stats.json").read_text())["totals"]["out"]
    print(json.dumps({"peak_kib": peak, "anon_kib": anon, "wall_s": wall, "rows_out": rows}))


def run_one(builder: str, data: Path, work: Path) -> dict:
    import yaml

    recipe = work / f"{builder}-{data.stem}.yaml"
    recipe.write_text(yaml.safe_dump({
        "name": f"mem-{builder}", "inputs": [{**RECIPES[builder], "path": str(data), "source": "medquad"}],
        "steps": ["normalize_text"], "output": {"formats": ["arrow", "jsonl"], "card": False}}))
    proc = subprocess.run([sys.executable, __file__, "--measure", str(recipe), str(work / recipe.stem)],
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs=2, default=[10_000, 100_000], metavar=("BASE", "LARGE"))
    ap.add_argument("--builders", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    ap.add_argument("--measure", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        measure(Path(args.measure[0]), Path(args.measure[1]))
        return
    pairs, note = medquad_pairs()
    print(note)
    with tempfile.TemporaryDirectory(prefix="meddata-mem-") as tmp:
        work = Path(tmp)
        inputs = {n: write_inputs(work, pairs, n) for n in args.sizes}
        print(f"{'builder':<10} {'rows':>8} {'input MB':>9} {'peak RSS MiB':>13} {'anon MiB':>9} {'wall s':>7}")
        for builder in args.builders:
            results = {}
            for n in args.sizes:
                data = inputs[n][builder]
                r = run_one(builder, data, work)
                assert r["rows_out"] == n, r
                results[n] = r
                anon = f"{r['anon_kib'] / 1024:.1f}" if r["anon_kib"] else "n/a"
                print(f"{builder:<10} {n:>8,} {data.stat().st_size / 2**20:>9.1f} {r['peak_kib'] / 1024:>13.1f} "
                      f"{anon:>9} {r['wall_s']:>7.1f}")
            small, large = (results[n] for n in args.sizes)
            grew = args.sizes[1] / args.sizes[0]
            print(f"{builder:<10} {args.sizes[1]:,} / {args.sizes[0]:,} rows (input {grew:.0f}x): peak RSS ratio "
                  f"{large['peak_kib'] / small['peak_kib']:.2f}" + (
                      f", anonymous RSS ratio {large['anon_kib'] / small['anon_kib']:.2f}"
                      if small["anon_kib"] and large["anon_kib"] else ""))
        print("Peak RSS includes the memory-mapped Arrow files datasets reads (file-backed pages the kernel "
              "can drop);\nanonymous RSS is the process's own heap, the number that must stay flat.")


if __name__ == "__main__":
    main()
