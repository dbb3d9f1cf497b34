"""A builder's read split across worker processes: ``meddata build`` of a folder of notes with
``--num-proc N`` against the one-process read (``--num-proc 1``, the baseline), whole processes.

The folder holds real MTSamples transcriptions (../shared/data/mtsamples), one note per file,
copied ``--copies`` times (each copy marked, so no two notes are equal). Each arm runs
``--repeats`` times, alternating; the script prints the median wall time and the read step's
own seconds (stats.json) of each arm, the ratios, and checks both builds wrote the same bytes.

    python benchmarks/parallel_read.py                  # ~20k notes, 2 processes, 3 repeats
    python benchmarks/parallel_read.py --copies 1 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: ../shared/data next to the checkout (or next to the folder of worktrees), or $MEDDATA_SHARED_DATA.
SHARED = next((p for p in (Path(os.environ.get("MEDDATA_SHARED_DATA", "/nonexistent")), ROOT.parent / "shared" / "data",
                           ROOT.parent.parent / "shared" / "data") if p.is_dir()), ROOT.parent / "shared" / "data")
MTSAMPLES = SHARED / "mtsamples" / "mtsamples.jsonl"
RECIPE = """name: parallel-read
inputs:
  - builder: note_folder
    path: notes
    phi_status: deidentified
    id_pattern: '(?P<patient_id>p\\d+)/'
output: {card: false}
"""


def make_notes(folder: Path, source: Path, copies: int) -> int:
    notes = [n["transcription"] for n in map(json.loads, source.open()) if n.get("transcription")]
    for copy in range(copies):
        for i, text in enumerate(notes):
            path = folder / f"c{copy}" / f"p{i % 50:02d}" / f"note{i:05d}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"{text.replace(',  ', chr(10))}\n(copy {copy})\n")
    return len(notes) * copies


def build(work: Path, out: str, num_proc: int) -> tuple[float, float]:
    """(wall seconds of the whole process, the read step's own seconds)."""
    shutil.rmtree(work / out, ignore_errors=True)
    meddata = Path(sys.executable).with_name("meddata")
    start = time.perf_counter()
    subprocess.run([str(meddata), "build", "recipe.yaml", "--out", out, "--num-proc", str(num_proc)], cwd=work,
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    stats = json.loads((work / out / "stats.json").read_text())
    return wall, stats["steps"][0]["seconds"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", type=Path, default=MTSAMPLES, help="JSONL with a 'transcription' field")
    ap.add_argument("--copies", type=int, default=4)
    ap.add_argument("--num-proc", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="meddata-parallel-read-") as tmp:
        work = Path(tmp)
        n = make_notes(work / "notes", args.source, args.copies)
        (work / "recipe.yaml").write_text(RECIPE)
        arms = {"one process (baseline)": ("one", 1), f"{args.num_proc} processes": ("split", args.num_proc)}
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in arms}
        for _ in range(args.repeats):
            for name, (out, num_proc) in arms.items():
                times[name].append(build(work, out, num_proc))
        same = all((work / "one" / f).read_bytes() == (work / "split" / f).read_bytes()
                   for f in ("jsonl/train.jsonl", "quarantine.jsonl") if (work / "one" / f).exists())
        print(f"{n:,} notes, one file each; median of {args.repeats}")
        medians = {}
        for name, runs in times.items():
            wall, read = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
            medians[name] = (wall, read)
            print(f"  {name:24s} wall {wall:6.2f} s   read step {read:6.2f} s   {n / wall:8,.0f} notes/s")
        (base_wall, base_read), (wall, read) = medians.values()
        print(f"  speed-up: whole build {base_wall / wall:.2f}x, read step {base_read / read:.2f}x; "
              f"outputs identical: {same}")


if __name__ == "__main__":
    main()
