"""The one bad-input kit for builder robustness tests (``from badinput import ...``).

Every builder must turn each damaged input into a clear error or quarantine entries and
finish with counts that add up: truncated JSON (or a truncated file of the builder's own
format), latin-1 bytes where UTF-8 is expected, binary junk, an empty file, and one 10 MB
line. ``bad_inputs`` damages a sample of a given format; ``bad_bytes`` damages a note-like
sample and plants a fake patient name (``SECRET``) that must never reach a log.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from builder_testkit import one, quarantine_of

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
    assert_counts_add_up(result)
    t = result.totals
    lines = (out / "quarantine.jsonl").read_text(encoding="utf-8").splitlines()
    entries = [json.loads(line) for line in lines]
    assert len(entries) == t["quarantined"]
    for e in entries:
        assert e["file"] and e["locator"] and e["error"], e
    return {"totals": t, "quarantine": entries}


robust_cases = pytest.mark.parametrize("case", CASES)


SECRET = "Zebulon Quackenbush"  # a fake patient name planted in bad inputs; it must never reach a log
BAD_KINDS = ["truncated_json", "latin1", "binary", "empty", "long_line"]


def bad_bytes(kind: str, good: bytes) -> bytes:
    """A damaged version of ``good`` (a valid small input containing the word ``pain``)."""
    if kind == "truncated_json":
        return (b'{"note_id": 1, "transcription": "SUBJECTIVE: ' + SECRET.encode()
                + b' has pain", "resourceType": "Bundle", "conversations": [{"from": "hu')
    if kind == "latin1":
        return good.replace(b"pain", b"pain " + SECRET.encode() + b" caf\xe9")  # \xe9: latin-1 e-acute
    if kind == "binary":
        return random.Random(0).randbytes(64 * 1024)
    if kind == "empty":
        return b""
    if kind == "long_line":
        return (SECRET + " ").encode() * (10 * 1024 * 1024 // (len(SECRET) + 1))
    raise ValueError(kind)


def assert_counts_add_up(result) -> None:
    t = result.totals
    assert t["read"] == t["out"] + t["dropped"] + t["quarantined"] - t["created"]


def assert_bad_input_handled(result, folder: Path) -> list[dict]:
    """The build finished, counted everything, quarantined with file:locator, leaked nothing."""
    assert_counts_add_up(result)
    q = quarantine_of(result)
    assert result.totals["quarantined"] == len(q) >= 1
    for entry in q:
        assert Path(entry["file"]).parent == folder and entry["locator"] and entry["error"]
    for log in [result.out_dir / "quarantine.jsonl", result.stats_path, *result.out_dir.glob("dropped/*.jsonl")]:
        assert SECRET not in log.read_text(encoding="utf-8")
    return q


def build_damaged(build, tmp_path: Path, builder: str, files: dict[str, bytes], kind: str,
                  read_folder: bool = False):
    """Damage each of ``files`` (name -> a good sample) with ``bad_bytes(kind, ...)`` in a fresh
    folder, build ``builder`` on the first file (or on the folder), and check the build handled
    it (:func:`assert_bad_input_handled`). Returns the build result."""
    folder = tmp_path / "in"
    folder.mkdir()
    for name, good in files.items():
        (folder / name).write_bytes(bad_bytes(kind, good))
    target = folder if read_folder else folder / next(iter(files))
    result = build(one(builder, target), out=tmp_path / "out")
    assert_bad_input_handled(result, folder)
    return result
