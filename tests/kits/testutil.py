"""Helpers importable from any test module (``from testutil import read_jsonl``)."""

from __future__ import annotations

import json
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
ROOT = TESTS.parent
DATA = TESTS / "data"
EXAMPLES = ROOT / "examples"


def read_jsonl(path: Path) -> list[dict]:
    with Path(path).open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    return path


def assert_scored_with_intervals(row: dict, models: tuple[str, ...], n: int) -> None:
    """An eval report row scored every model on ``n`` items, each value inside its 95 % interval."""
    for name in models:
        entry = row["models"][name]
        assert entry["n"] == n
        lo, hi = entry["ci95"]
        assert 0 <= lo <= entry["value"] <= hi <= 1
