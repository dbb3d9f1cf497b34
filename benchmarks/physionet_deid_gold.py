"""Convert the PhysioNet de-identification gold corpus to meddata's gold JSONL.

    python benchmarks/physionet_deid_gold.py id.text id.phi --out physionet_gold.jsonl
    meddata deid eval --gold physionet_gold.jsonl

The corpus (2,434 real nursing notes with surrogate PHI, Neamatullah et al. 2008) is
distributed by PhysioNet with its ``deid`` software; it is not bundled here. ``id.text``
holds ``START_OF_RECORD=P||||N||||`` ... ``||||END_OF_RECORD`` records; ``id.phi`` lists,
per ``Patient P<TAB>Note N`` header, ``start<TAB>start<TAB>end`` character offsets into each
note. The corpus marks PHI without types, so every span is written as ``NAME`` and only the
overall (binary) scores are meaningful. It does not mark ages under 90 or weekdays, so score
precision with that in mind. Notes without an ``id.phi`` entry are skipped and counted.

``id.phi`` is the output of PhysioNet's own ``deid`` tool on ``id.text`` (its ``id.info``
trace lists the same offsets with the rule that fired), not the human annotation: scores
against it measure agreement with that tool, misspellings and ordinary words it flagged
included. The human reference is ``id-phi.phrase``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

_RECORD = re.compile(r"START_OF_RECORD=(\d+)\|\|\|\|(\d+)\|\|\|\|\n(.*?)\|\|\|\|END_OF_RECORD", re.S)
_HEADER = re.compile(r"Patient (\d+)\s+Note (\d+)")


def read_offsets(path: Path) -> dict[tuple[int, int], list[tuple[int, int]]]:
    spans: dict[tuple[int, int], list[tuple[int, int]]] = {}
    key = None
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        m = _HEADER.match(line.strip())
        if m:
            key = (int(m[1]), int(m[2]))
            spans[key] = []
            continue
        parts = line.split()
        if key is None or len(parts) != 3 or not all(p.isdigit() for p in parts):
            sys.exit(f"{path}:{n}: expected 'Patient P<TAB>Note N' or 'start<TAB>start<TAB>end', got {line[:40]!r}")
        spans[key].append((int(parts[0]), int(parts[2])))
    return spans


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("text", type=Path, help="id.text from the PhysioNet deid package")
    ap.add_argument("phi", type=Path, help="id.phi (character offsets of the gold PHI)")
    ap.add_argument("--out", type=Path, required=True, help="gold JSONL for 'meddata deid eval --gold'")
    args = ap.parse_args()
    offsets = read_offsets(args.phi)
    written = skipped = bad = 0
    with args.out.open("w", encoding="utf-8") as out:
        for m in _RECORD.finditer(args.text.read_text(encoding="utf-8", errors="replace")):
            key, body = (int(m[1]), int(m[2])), m[3]
            if key not in offsets:
                skipped += 1
                continue
            spans = [{"start": a, "end": b, "type": "NAME"} for a, b in offsets[key] if 0 <= a < b <= len(body)]
            bad += len(offsets[key]) - len(spans)
            out.write(json.dumps({"id": f"{key[0]}-{key[1]}", "text": body, "spans": spans}) + "\n")
            written += 1
    print(f"{written} notes -> {args.out}; {skipped} notes without offsets skipped; {bad} offsets outside their note dropped")


if __name__ == "__main__":
    main()
