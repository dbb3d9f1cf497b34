"""Peak memory and time of the ``split`` step at 100k and 1M rows: the compact implementation
against the former all-Python one (the named baseline), each in its own process.

Input per size (made once, in its own process, reused from ``--work``): a memory-mapped Arrow
file in meddata's canonical schema, as a checkpoint is, with ``id``, ``source``, a short
``text`` (real MedQuAD questions when ../shared/data is there) and the ``meta`` struct; 10% of
the rows carry a ``meta.patient_id`` (about 4 notes per patient), the other 90% have none, so
each of them is its own group: the worst case for per-row objects.

Each run is a fresh ``python`` process that loads the dataset, runs the step (``Split.apply``,
or the baseline's loop over rows: one key string per row, a ``Counter``, a dict of groups and
a list of labels), wraps the labels in ``GlobalResult`` as the runner receives them, and
prints its whole-process peak RSS (``ru_maxrss``: imports, Arrow pages of the two columns
read, and the step), the RSS before the step, its heap (anonymous RSS, sampled every 10 ms;
the file pages of the memory-mapped input are not in it) before and at its peak, and the
step's wall time. The labels of both
are compared (a digest), so the speed-up never comes from a different answer.

    .venv/bin/python benchmarks/split_memory.py                       # 100k and 1M rows
    .venv/bin/python benchmarks/split_memory.py --rows 20000 --ray    # quick, plus the Ray executor
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = next((p for p in (Path(os.environ.get("MEDDATA_SHARED_DATA", "/nonexistent")), ROOT.parent / "shared" / "data",
                           ROOT.parent.parent / "shared" / "data") if p.is_dir()), ROOT.parent / "shared" / "data")
RATIOS = {"train": 0.8, "validation": 0.1, "test": 0.1}
SEED = 13


# -- input -------------------------------------------------------------------------------------
def make_dataset(n: int, folder: Path) -> Path:
    """A canonical-schema Arrow file of ``n`` rows, written in 50k-row batches as a step's
    checkpoint shard is (reused when present)."""
    import numpy as np
    import pyarrow as pa
    from datasets import Features, Value
    from datasets.arrow_writer import ArrowWriter

    from meddata.records import META_FEATURES

    path = folder / f"split-input-{n}.arrow"
    if path.exists():
        return path
    medquad = SHARED / "medquad" / "medquad.jsonl"
    questions = ["What are the symptoms of anaemia?"]
    if medquad.exists():
        with medquad.open(encoding="utf-8") as fh:
            questions = [q for line in fh if (q := json.loads(line).get("question"))][:5000] or questions
    rng = np.random.default_rng(0)
    features = Features({"id": Value("string"), "source": Value("string"), "text": Value("string"),
                         "meta": META_FEATURES})
    meta_type = features.arrow_schema.field("meta").type
    tmp = path.with_suffix(".tmp")
    with ArrowWriter(features=features, path=str(tmp)) as writer:
        for start in range(0, n, 50_000):
            m = min(50_000, n - start)
            patient = np.where(rng.random(m) < 0.10, rng.integers(0, max(n // 40, 1), m), -1)
            pids = pa.array([f"P{p:07d}" if p >= 0 else "" for p in patient.tolist()], pa.string())
            children = [pids if f.name == "patient_id" else pa.nulls(m, f.type) for f in meta_type]
            writer.write_table(pa.table({
                "id": pa.array([f"qa-{i:08d}" for i in range(start, start + m)], pa.string()),
                "source": pa.array(["medquad"] * m, pa.string()),
                "text": pa.array([questions[i % len(questions)] for i in range(start, start + m)], pa.string()),
                "meta": pa.StructArray.from_arrays(children, fields=list(meta_type)),
            }))
        writer.finalize()
    tmp.rename(path)
    return path


# -- the baseline: the former implementation, verbatim, kept in tests/kits/former_split.py ----
def baseline_split(dataset, ratios=RATIOS, seed: int = SEED):
    sys.path.insert(0, str(ROOT / "tests" / "kits"))
    from former_split import old_apply

    labels, report = old_apply(dataset, ratios=dict(ratios), seed=seed)
    return labels, report["groups"]


# -- one measured process ------------------------------------------------------------------------
def _anon_mb() -> float:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("RssAnon:")) / 1024


class AnonPeak(threading.Thread):
    """Samples the process's anonymous RSS (its heap; not the Arrow file's pages) every 10 ms."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak, self.stop = _anon_mb(), threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.01):
            self.peak = max(self.peak, _anon_mb())


def child(impl: str, data: Path) -> None:
    t_start = time.perf_counter()
    sampler = AnonPeak()
    sampler.start()
    from datasets import Dataset
    from meddata.filters.split import Split

    from meddata.records import SPLIT_COLUMN
    from meddata.steps import GlobalResult, StepContext

    ds = Dataset.from_file(str(data))
    rss_before, anon_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, _anon_mb()
    t0 = time.perf_counter()
    if impl == "baseline":
        labels, groups = baseline_split(ds)
        result = GlobalResult(source=ds, new_columns={SPLIT_COLUMN: labels})
    else:
        executor = "ray" if impl == "ray" else "local"
        if executor == "ray":
            import ray

            ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
            t0 = time.perf_counter()  # the cluster's start-up is not the step's
        step = Split({"ratios": RATIOS, "seed": SEED})
        result = step.apply(ds, StepContext(step_dir=data.parent, executor=executor))
        groups = result.report["groups"]
    seconds = time.perf_counter() - t0
    sampler.stop.set()
    sampler.join()
    peak_anon = max(sampler.peak, _anon_mb())  # before the digest below
    values = result.new_columns[SPLIT_COLUMN]
    digest = hashlib.sha256("\n".join(values).encode()).hexdigest()[:16]
    print(json.dumps({"impl": impl, "rows": len(ds), "groups": groups, "step_s": round(seconds, 2),
                      "process_s": round(time.perf_counter() - t_start, 2),
                      "rss_before_mb": round(rss_before / 1024), "peak_rss_mb": round(
                          resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024), "labels_sha": digest,
                      "anon_before_mb": round(anon_before), "peak_anon_mb": round(peak_anon)}))


def run(impl: str, data: Path) -> dict:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, __file__, "--child", impl, "--data", str(data)],
                         capture_output=True, text=True, check=False)
    if out.returncode:
        raise SystemExit(f"{impl} on {data.name} failed:\n{out.stderr[-3000:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["wall_s"] = round(time.perf_counter() - t0, 2)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--work", type=Path, default=Path("/tmp/meddata-split-bench"))
    ap.add_argument("--ray", action="store_true", help="also run the compact split on the Ray executor (local cluster)")
    ap.add_argument("--child", choices=["baseline", "compact", "ray"], help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child, args.data)
    args.work.mkdir(parents=True, exist_ok=True)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    results = {}
    for n in args.rows:
        data = Path(subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); "
                                    f"import split_memory as m; from pathlib import Path; "
                                    f"print(m.make_dataset({n}, Path({str(args.work)!r})))"],
                                   capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])
        rows = {impl: run(impl, data) for impl in ["baseline", "compact"] + (["ray"] if args.ray else [])}
        results[n] = rows
        for impl, r in rows.items():
            print(f"{n:>9,} rows  {impl:<8}  groups {r['groups']:>9,}  step {r['step_s']:>6.2f} s  "
                  f"process {r['wall_s']:>6.2f} s  RSS before step {r['rss_before_mb']:>5} MB  "
                  f"peak {r['peak_rss_mb']:>5} MB  (step adds {r['peak_rss_mb'] - r['rss_before_mb']:>5} MB)  "
                  f"heap {r['anon_before_mb']:>4} -> {r['peak_anon_mb']:>4} MB  labels {r['labels_sha']}")
        base, new = rows["baseline"], rows["compact"]
        same = all(r["labels_sha"] == base["labels_sha"] for r in rows.values())
        print(f"{n:>9,} rows  compact vs baseline: peak RSS {new['peak_rss_mb'] / base['peak_rss_mb']:.2f}x, "
              f"step's own memory {(new['peak_rss_mb'] - new['rss_before_mb']) / max(base['peak_rss_mb'] - base['rss_before_mb'], 1):.2f}x, "
              f"step's heap growth {(new['peak_anon_mb'] - new['anon_before_mb']) / max(base['peak_anon_mb'] - base['anon_before_mb'], 1):.2f}x, "
              f"step time {new['step_s'] / base['step_s']:.2f}x; identical labels: {same}")
        if not same:
            raise SystemExit("the labels differ from the baseline's")
    if len(args.rows) > 1:
        lo, hi = min(args.rows), max(args.rows)
        for impl in results[lo]:
            print(f"{impl}: peak RSS {results[lo][impl]['peak_rss_mb']} MB at {lo:,} rows -> "
                  f"{results[hi][impl]['peak_rss_mb']} MB at {hi:,} rows "
                  f"({results[hi][impl]['peak_rss_mb'] / results[lo][impl]['peak_rss_mb']:.2f}x)")


if __name__ == "__main__":
    main()
