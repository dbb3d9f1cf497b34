"""Helpers importable from any test module (``from testutil import read_jsonl``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
ROOT = TESTS.parent
DATA = TESTS / "data"
EXAMPLES = ROOT / "examples"
#: The full public data sets (../shared/data next to the checkout or its folder, or
#: $MEDDATA_SHARED_DATA), or a path that does not exist: tests then use the bundled samples.
SHARED = next((p for p in (Path(os.environ.get("MEDDATA_SHARED_DATA", "/nonexistent")), ROOT.parent / "shared" / "data",
                           ROOT.parent.parent / "shared" / "data") if p.is_dir()), ROOT.parent / "shared" / "data")


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
