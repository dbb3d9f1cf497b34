"""``meddata dedup``: near-duplicate removal on an ``{id, text}`` JSONL file, outside a recipe."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from meddata.cli import CliError
from meddata.io import iter_jsonl, iter_lines
from meddata.outcomes import Quarantine


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "dedup", help="remove near-duplicates from an {id, text} JSONL file",
        description="Near-duplicate removal with MinHash + LSH (datasketch's scheme, vectorised): rows whose "
                    "shingle sets reach the Jaccard threshold form clusters (connected components over all candidate "
                    "pairs); one row per cluster is kept. Writes the kept rows unchanged, in input order, "
                    "and one JSON object per cluster of two or more rows: {\"members\": [ids], \"kept\": id}.",
    )
    p.add_argument("input", metavar="IN.jsonl", help="JSON Lines file, one object per line with an id and a text")
    p.add_argument("--out", required=True, metavar="KEPT.jsonl", help="where the kept rows go")
    p.add_argument("--clusters", required=True, metavar="CLUSTERS.jsonl", help="where the cluster report goes")
    p.add_argument("--threshold", type=float, default=0.8, help="Jaccard similarity of shingle sets (default 0.8)")
    p.add_argument("--text-field", default="text", help="field holding the text (default text)")
    p.add_argument("--id-field", default="id", help="field holding the row id (default id)")
    p.add_argument("--ngram", type=int, default=5, help="shingle size in words or characters (default 5)")
    p.add_argument("--unit", choices=["word", "char"], default="word", help="word (default) or char n-grams")
    p.add_argument("--num-perm", type=int, default=128, help="MinHash permutations (default 128)")
    p.add_argument("--keep", choices=["first", "longest"], default="first",
                   help="which row of a cluster survives (default: the first in the file)")
    p.add_argument("--no-verify", action="store_true",
                   help="take every LSH candidate pair as a duplicate (no exact Jaccard check)")
    p.add_argument("--no-normalize", action="store_true",
                   help="case-, punctuation- and whitespace-sensitive shingles")
    p.add_argument("--num-proc", type=int, default=1, help="worker processes for signatures (default 1)")
    p.add_argument("--seed", type=int, default=1, help="MinHash permutation seed (default 1)")
    p.set_defaults(func=cmd_dedup)


def _read(path: Path, id_field: str, text_field: str) -> tuple[list[int], list[Any], list[str]]:
    """(line numbers, ids, texts) of every record; the first malformed line is an error."""
    lines: list[int] = []
    ids: list[Any] = []
    texts: list[str] = []
    seen: dict[Any, int] = {}
    for item in iter_jsonl(path):
        if isinstance(item, Quarantine):
            raise CliError(f"{item.file}:{item.locator.removeprefix('line ')}: {item.error}")
        locator, obj = item
        n = int(locator.removeprefix("line "))
        where = f"{path}:{n}"
        if id_field not in obj:
            raise CliError(f"{where}: field '{id_field}' is missing (set --id-field)")
        row_id = obj[id_field]
        if not isinstance(row_id, (str, int)) or isinstance(row_id, bool):
            raise CliError(f"{where}: field '{id_field}' must be a string or an integer")
        if row_id in seen:
            raise CliError(f"{where}: id in field '{id_field}' repeats the id on line {seen[row_id]}; ids must be unique")
        text = obj.get(text_field)
        if not isinstance(text, str):
            problem = "is missing" if text_field not in obj else "must be a string"
            raise CliError(f"{where}: field '{text_field}' {problem} (set --text-field)")
        seen[row_id] = n
        lines.append(n)
        ids.append(row_id)
        texts.append(text)
    return lines, ids, texts


def cmd_dedup(args: argparse.Namespace) -> int:
    from meddata.filters.dedup import pick_kept
    from meddata.filters.minhash import Shingler, near_duplicates

    src, out, clusters_path = Path(args.input), Path(args.out), Path(args.clusters)
    if not src.is_file():
        raise CliError(f"{src}: no such file")
    if not 0.0 < args.threshold < 1.0:
        raise CliError(f"--threshold must be between 0 and 1, got {args.threshold}")
    if not 1 <= args.ngram <= 16:
        raise CliError(f"--ngram must be between 1 and 16, got {args.ngram}")
    if args.num_perm < 16:
        raise CliError(f"--num-perm must be at least 16, got {args.num_perm}")
    if src.resolve() in (out.resolve(), clusters_path.resolve()) or out.resolve() == clusters_path.resolve():
        raise CliError("IN.jsonl, --out and --clusters must be three different files")
    lines, ids, texts = _read(src, args.id_field, args.text_field)
    found = near_duplicates(
        texts, threshold=args.threshold, shingler=Shingler(args.ngram, args.unit, not args.no_normalize),
        num_perm=args.num_perm, seed=args.seed, verify=not args.no_verify, num_proc=args.num_proc,
    )
    lengths = [len(t) for t in texts]
    dropped: set[int] = set()
    for path in (out, clusters_path):
        path.parent.mkdir(parents=True, exist_ok=True)
    clusters = found.clusters()
    with clusters_path.open("w", encoding="utf-8") as fh:
        for members in clusters:
            kept = pick_kept(members.tolist(), args.keep, lengths, None)
            dropped.update(int(m) for m in members if m != kept)
            fh.write(json.dumps({"members": [ids[m] for m in members], "kept": ids[kept]}, ensure_ascii=False) + "\n")
    drop_lines = {lines[i] for i in dropped}
    with out.open("w", encoding="utf-8") as fh:
        for item in iter_lines(src):
            n, line = item  # the file was read once already: no quarantine entries here
            if line.strip() and n not in drop_lines:
                fh.write(line + "\n")
    print(f"{len(texts):,} rows -> kept {len(texts) - len(dropped):,}, dropped {len(dropped):,} near-duplicates "
          f"in {len(clusters):,} clusters (threshold {args.threshold}, {found.bands} bands x {found.rows} rows, "
          f"{found.candidate_pairs:,} candidate pairs)")
    print(f"kept:     {out}")
    print(f"clusters: {clusters_path}")
    return 0
