"""``meddata deid detect|eval|redact``: PHI detection, scoring and de-identification of JSONL files.

Input rows are ``{id, text}``; detect writes ``{id, spans: [{start, end, type}]}`` with
character offsets into ``text``; eval reads gold rows ``{id, text, spans}``. Nothing printed
or written besides the output files ever contains a detected value.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from meddata.cli import CliError

logger = logging.getLogger("meddata.deid")
_CHUNK = 64
_worker = None  # per-process detector for --jobs


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("deid", help="detect, score and remove PHI in JSONL text",
                       description="De-identification of clinical text (HIPAA Safe Harbor identifiers).")
    verbs = p.add_subparsers(dest="deid_verb", metavar="ACTION")

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("--policy", choices=("safe_harbor", "recall"), default="safe_harbor",
                       help="safe_harbor (default): what the HIPAA rule requires (dates, years, ages over 89, "
                            "names, places, contacts, ids), keeping ages up to 89, weekdays and states; "
                            "recall: also every age, weekday, state and country")
        q.add_argument("--model", choices=("auto", "on", "off"), default="auto",
                       help="spaCy NER: auto (use when installed), on (require), off (rules only)")
        q.add_argument("--learned", choices=("auto", "on", "off"), default="off",
                       help="meddata's learned PHI tagger, merged with the rules: off (default), auto (use when "
                            "shipped), on (require it)")
        q.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
        q.add_argument("--text-field", default="text", help="input field holding the text (default: text)")

    d = verbs.add_parser("detect", help="write PHI spans for each input row",
                         description="Read {id, text} rows; write {id, spans: [{start, end, type}]}.")
    d.add_argument("input", help="input JSONL")
    d.add_argument("--out", required=True, help="output JSONL of spans")
    common(d)
    d.set_defaults(func=cmd_detect)

    e = verbs.add_parser("eval", help="score detection against gold spans",
                         description="Print recall, precision and F2 (lenient: overlap; strict: full coverage), "
                                     "overall and per type. Without --pred, runs detection itself.")
    e.add_argument("--gold", required=True, help="gold JSONL: {id, text, spans: [{start, end, type}]}")
    e.add_argument("--pred", help="predictions JSONL from 'meddata deid detect' (default: detect now)")
    e.add_argument("--gold-ages", choices=("all", "over_89"), default="all",
                   help="count every gold AGE span (default) or only ages over 89")
    e.add_argument("--json", help="also write the scores as JSON to this file")
    e.add_argument("--min-recall", type=float, help="exit 1 when lenient recall is below this")
    common(e)
    e.set_defaults(func=cmd_eval)

    r = verbs.add_parser("redact", help="write de-identified copies of the input rows",
                         description="Replace PHI in the text field: surrogate (realistic fakes), mask ([NAME]) or "
                                     "redact (remove). Surrogates use the key in --key-env when set.")
    r.add_argument("input", help="input JSONL")
    r.add_argument("--out", required=True, help="output JSONL")
    r.add_argument("--strategy", choices=("surrogate", "mask", "redact"), default="surrogate")
    r.add_argument("--key-env", default="MEDDATA_DEID_KEY", help="environment variable with the surrogate key")
    r.add_argument("--patient-field", default="patient_id",
                   help="field naming the patient (one date shift per patient; default patient_id, else id)")
    r.add_argument("--keep-weekday", action="store_true", help="shift dates by whole weeks")
    common(r)
    r.set_defaults(func=cmd_redact)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _lean_spacy() -> None:
    """A ``meddata deid`` process runs only spaCy pipelines made of NumPy CNNs; thinc imports
    torch whenever it is installed, which costs seconds of start-up for nothing. Keep it out
    of this process (never done when the detector is used as a library)."""
    if "torch" not in sys.modules and "thinc" not in sys.modules:
        sys.modules["torch"] = None  # type: ignore[assignment]  # "import torch" raises ImportError
    import warnings

    from meddata.filters.deid.ner import RulesOnlyWarning

    # the rules-only notice is logged once; as a Python warning too it would print twice
    warnings.filterwarnings("ignore", category=RulesOnlyWarning)


def _read_rows(path: str, text_field: str | None) -> Iterator[tuple[int, dict]]:
    from meddata.filters.deid.evaluate import json_lines

    if not Path(path).exists():
        raise CliError(f"{path}: no such file")
    for n, row in json_lines(path, CliError):
        if not isinstance(row, dict) or "id" not in row:
            raise CliError(f"{path}:{n}: field 'id' is missing")
        if text_field is not None and not isinstance(row.get(text_field), str):
            raise CliError(f"{path}:{n}: field '{text_field}' must be a string")
        yield n, row


def _chunks(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _init_worker(policy: str, model: str, learned: str = "off") -> None:
    global _worker
    from meddata.filters.deid.detector import Detector, config_for

    _worker = Detector(config_for(policy, model=model, learned=learned))


def _detect_chunk(texts: list[str]) -> list[list[dict]]:
    return [[s.as_dict() for s in spans] for spans in _worker.detect_many(texts)]


def detect_all(texts: list[str], policy: str, model: str, jobs: int, learned: str = "off") -> list[list[dict]]:
    """Spans for every text, in order; ``jobs`` > 1 spreads chunks over processes."""
    if jobs <= 1 or len(texts) <= _CHUNK:
        _init_worker(policy, model, learned)
        return [s for chunk in _chunks(texts, _CHUNK) for s in _detect_chunk(chunk)]
    with ProcessPoolExecutor(jobs, initializer=_init_worker, initargs=(policy, model, learned)) as pool:
        return [s for res in pool.map(_detect_chunk, _chunks(texts, _CHUNK)) for s in res]


def _detected(args: argparse.Namespace) -> tuple[list[dict], list[list[dict]]]:
    """The input rows and the PHI spans found in each row's text field."""
    rows = [row for _, row in _read_rows(args.input, args.text_field)]
    return rows, detect_all([r[args.text_field] for r in rows], args.policy, args.model, args.jobs, args.learned)


def _output(path: str) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def _summary(counts: Counter[str]) -> str:
    """``NAME 3 DATE 2``: span counts by type, the values themselves never."""
    return " ".join(f"{t} {n:,}" for t, n in counts.most_common())


def cmd_detect(args: argparse.Namespace) -> int:
    _lean_spacy()
    rows, spans = _detected(args)
    out = _output(args.out)
    counts: Counter[str] = Counter()
    with out.open("w", encoding="utf-8") as fh:
        for row, ss in zip(rows, spans):
            counts.update(s["type"] for s in ss)
            fh.write(json.dumps({"id": row["id"], "spans": ss}) + "\n")
    print(f"{len(rows):,} rows, {sum(counts.values()):,} PHI spans ({_summary(counts) or 'none'}) -> {out}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    _lean_spacy()
    from meddata.filters.deid.evaluate import evaluate, load_gold

    try:
        gold = load_gold(args.gold, ages=args.gold_ages)
    except (ValueError, OSError) as exc:
        raise CliError(str(exc)) from None
    if args.pred:
        preds = {}
        for n, row in _read_rows(args.pred, None):
            spans = row.get("spans")
            if not isinstance(spans, list) or not all(isinstance(s, dict) and {"start", "end", "type"} <= set(s)
                                                      for s in spans):
                raise CliError(f"{args.pred}:{n}: field 'spans' must be a list of {{start, end, type}}")
            preds[str(row["id"])] = spans
    else:
        spans = detect_all([g["text"] for g in gold], args.policy, args.model, args.jobs, args.learned)
        preds = {g["id"]: s for g, s in zip(gold, spans)}
    report = evaluate(gold, preds)
    print(report.format())
    if args.json:
        Path(args.json).write_text(json.dumps(report.as_dict(), indent=2))
    if args.min_recall is not None and report.metrics("lenient")["recall"] < args.min_recall:
        print(f"recall below {args.min_recall}", file=sys.stderr)
        return 1
    return 0


def cmd_redact(args: argparse.Namespace) -> int:
    _lean_spacy()
    from meddata.filters.deid.replace import replace_spans
    from meddata.filters.deid.surrogate import Surrogates, key_from_env

    rows, spans_all = _detected(args)
    key, persistent = key_from_env(args.key_env)
    if args.strategy == "surrogate" and not persistent:
        logger.warning("%s is not set: surrogates are consistent within this run only", args.key_env)
    from meddata.filters.deid.spans import Span

    out = _output(args.out)
    counts: Counter[str] = Counter()
    with out.open("w", encoding="utf-8") as fh:
        for row, ss in zip(rows, spans_all):
            text = row[args.text_field]
            spans = [Span(s["start"], s["end"], s["type"]) for s in ss]
            counts.update(s.type for s in spans)
            sur = None
            if args.strategy == "surrogate":
                sur = Surrogates(key, str(row.get(args.patient_field) or row["id"]), keep_weekday=args.keep_weekday)
            row = dict(row)
            row[args.text_field] = replace_spans(text, spans, args.strategy, sur)
            row["phi_counts"] = dict(sorted(Counter(s.type for s in spans).items()))
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    summary = _summary(counts) or "no PHI found"
    print(f"{len(rows):,} rows de-identified ({args.strategy}; {summary}) -> {out}")
    return 0

