"""Malformed inputs for builder robustness tests (``from badinput import bad_inputs``).

Every builder must turn each of these into a clear error or quarantine entries and finish
with counts that add up: truncated JSON (or a truncated file of the builder's own format),
latin-1 bytes where UTF-8 is expected, binary junk, an empty file, and one 10 MB line.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

TEN_MB = 10 * 1024 * 1024
CASES = ("truncated", "latin1", "binary_junk", "empty", "huge_line")


def bad_inputs(good: bytes, kind: str) -> dict[str, bytes]:
    """``good``: a valid sample file of the builder's format; ``kind``: jsonl, json, csv or xml."""
    latin = "Caf\u00e9 na\u00efve r\u00e9sum\u00e9 \u2014 \u00b5g".encode("latin-1", errors="replace")
    if kind == "jsonl":
        latin1 = good.splitlines()[0] + b"\n" + b'{"question": "' + latin + b'", "answer": "x"}\n'
        huge = b'{"question": "' + b"a" * TEN_MB + b'", "answer": "b"}\n'
    elif kind == "json":
        latin1 = b'[{"instruction": "", "input": "' + latin + b'", "output": "x"}]'
        huge = b'[{"instruction": "", "input": "' + b"a" * TEN_MB + b'", "output": "b"}]'
    elif kind == "csv":
        latin1 = good.splitlines()[0] + b"\n" + latin + b"," + latin + b"," + latin + b"\n"
        huge = good.splitlines()[0] + b"\n" + b"a" * TEN_MB + b"\n"
    elif kind == "xml":
        latin1 = b'<?xml version="1.0" encoding="UTF-8"?>\n<Document id="1">\n<Focus>' + latin + b"</Focus>\n</Document>\n"
        huge = b"a" * TEN_MB + b"\n"
    else:
        raise ValueError(kind)
    return {
        "truncated": good[: len(good) // 2 + 7],
        "latin1": latin1,
        "binary_junk": random.Random(0).randbytes(8192),
        "empty": b"",
        "huge_line": huge,
    }


def check_robust_build(build, recipe: dict, out: Path, case: str) -> dict:
    """Run ``recipe``; it must finish (counts are checked by the runner's conservation check)
    or fail with a one-line error naming the input. Returns quarantine entries by case."""
    try:
        result = build(recipe, out=out)
    except (ValueError, FileNotFoundError) as exc:
        assert "\n" not in str(exc).strip() and str(exc), f"{case}: unclear error {exc!r}"
        return {"error": str(exc)}
    t = result.totals
    assert t["read"] == t["out"] + t["dropped"] + t["quarantined"] - t["created"], case
    lines = (out / "quarantine.jsonl").read_text(encoding="utf-8").splitlines()
    entries = [json.loads(line) for line in lines]
    assert len(entries) == t["quarantined"]
    for e in entries:
        assert e["file"] and e["locator"] and e["error"], e
    return {"totals": t, "quarantine": entries}


robust_cases = pytest.mark.parametrize("case", CASES)
