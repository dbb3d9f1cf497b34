"""A step's checkpoint as the driver knows it: folders and a row count, never the rows.

The driver plans, reuses and accounts; it does not open checkpoints. Opening one (even
memory-mapped) puts pages of every shard and Arrow's bookkeeping in the opener's resident
set, which grows with the data: about 350 MB at a million QA rows. So a :class:`Checkpoint`
travels to the process that does the work (a worker, a forked child, a Ray task), which opens
it there with :meth:`Checkpoint.open`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from datasets import Dataset, concatenate_datasets


@dataclass(frozen=True)
class Checkpoint:
    """The kept rows of one step (or of all inputs, in order): ``<dir>/data/shard-*.arrow``."""

    dirs: tuple[Path, ...]
    num_rows: int

    def __len__(self) -> int:
        return self.num_rows

    def shard_files(self) -> list[Path]:
        return [p for d in self.dirs for p in sorted((Path(d) / "data").glob("shard-*.arrow"))]

    def open(self) -> Dataset:
        """The rows, memory-mapped, in order (call it where the work runs, not in the driver)."""
        files = self.shard_files()
        if not files:
            raise FileNotFoundError(f"{', '.join(map(str, self.dirs))}: no data shards")
        parts = [Dataset.from_file(str(p)) for p in files]
        ds = parts[0] if len(parts) == 1 else concatenate_datasets(parts)
        if len(ds) != self.num_rows:
            raise RuntimeError(f"checkpoint {self.dirs[-1]} holds {len(ds):,} rows, its stats say {self.num_rows:,}; "
                               "delete the build's .work folder and run again")
        return ds


def id_hashes(ds: Dataset) -> np.ndarray:
    """64-bit hashes of the ``id`` column: a compact column for uniqueness checks."""
    out = np.empty(len(ds), dtype=np.uint64)
    pos = 0
    for chunk in ds.data.table.column("id").chunks:
        for value in chunk.to_pylist():
            out[pos] = int.from_bytes(hashlib.blake2b(str(value).encode(), digest_size=8).digest(), "little")
            pos += 1
    return out


def repeated_ids(inputs: list[Checkpoint]) -> tuple[int, str] | None:
    """The first input whose ids repeat (within it, or an earlier input's) and what is wrong,
    with one example; None when every id is unique. Each input's ids are hashed once."""
    seen = np.empty(0, np.uint64)
    for k, checkpoint in enumerate(inputs):
        ds = checkpoint.open()
        mine = id_hashes(ds)
        uniq, counts = np.unique(mine, return_counts=True)
        repeated = uniq[counts > 1]
        across = np.intersect1d(uniq, seen, assume_unique=True)
        if len(repeated) or len(across):
            bad = repeated if len(repeated) else across
            pos = int(np.flatnonzero(np.isin(mine, bad[:1]))[0])
            example = ds.data.table.column("id")[pos].as_py()
            if len(repeated):
                return k, f"{len(repeated):,} ids occur more than once, e.g. {example!r}"
            return k, f"{len(across):,} ids were already produced by an earlier input, e.g. {example!r}"
        seen = np.union1d(seen, uniq)
    return None
