"""Patient-aware train/validation/test split.

Rows are grouped by a key (``meta.patient_id`` by default) and whole groups go to one split,
so no patient's notes land on two sides of an evaluation. Rows without the key are grouped by
``fallback`` (their own ``id``: each such row is a group of one). Groups are assigned largest
first to the split furthest below its target *row* count, so the row shares follow the ratios
even when one patient has a hundred notes and another has four; the seed shuffles groups of
equal size. The step writes the internal ``__split__`` column, which the output stage turns
into a DatasetDict.

Memory: groups are found by sorting each key source's (memory-mapped) column, never a copy
of every key; sizes, ranks and assignments are numpy arrays and a label is one byte per row,
so a million rows that are each their own group cost tens of MB, not Python objects per row.
On the Ray executor the grouping runs as tasks (see :func:`_ray_split`).
"""

from __future__ import annotations

import functools
import os
import random
import sys
from array import array
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset, Value
from pydantic import Field, field_validator

from meddata.records import META_FEATURES, SPLIT_COLUMN
from meddata.registry import register
from meddata.steps import GlobalResult, GlobalStep, StepContext, StepParams

SPLIT_NAMES_ORDER = ("train", "validation", "test")
#: Rows per Arrow batch while building keys: bounds the per-batch temporaries.
KEY_BATCH = 65_536
#: On Ray, at least this many rows per counting task (fewer, larger tasks on small inputs).
RAY_ROWS_PER_TASK = 25_000
#: At most this many hash partitions (reduce tasks): each map task returns one piece per partition.
RAY_MAX_PARTITIONS = 16


class SplitParams(StepParams):
    #: A meta field (patient_id, encounter_id, or meta.<field>) or a top-level column (source).
    by: str = "patient_id"
    #: Key for rows where ``by`` is empty: "id" makes each such row its own group.
    fallback: str = "id"
    ratios: dict[str, float] = Field(default_factory=lambda: {"train": 0.8, "validation": 0.1, "test": 0.1})
    #: Default: the recipe's seed.
    seed: int | None = None

    @field_validator("ratios")
    @classmethod
    def _ratios(cls, v: dict[str, float]) -> dict[str, float]:
        if not v:
            raise ValueError("give at least one split, e.g. {train: 0.9, test: 0.1}")
        for name, r in v.items():
            if not name or not name.replace("_", "").replace("-", "").isalnum():
                raise ValueError(f"split name {name!r} must be letters, digits, '-' or '_'")
            if r < 0:
                raise ValueError(f"ratio of {name!r} must not be negative")
        total = sum(v.values())
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"ratios must add up to 1, they add up to {total:g}")
        return v


# -- keys ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class KeySource:
    """Where a key's value lives: a top-level ``column``, or a field of the ``meta`` struct."""

    name: str  #: the name as the recipe gives it; the prefix of every key it produces
    column: str
    meta_field: str | None = None


def _key_source(key: str, columns: list[str]) -> KeySource:
    """Resolve ``key`` as a meta field, ``meta.<field>`` or a column (same rules as ever)."""
    field = key.removeprefix("meta.")
    if key.startswith("meta.") or (key in META_FEATURES and key not in columns):
        if field not in META_FEATURES:
            raise ValueError(f"split: 'meta.{field}' is not a meta field; meta has {', '.join(META_FEATURES)}")
        return KeySource(key, "meta", field)
    if key not in columns:
        raise ValueError(f"split: the dataset has no column {key!r} (columns: {', '.join(columns)})")
    return KeySource(key, key)


@functools.cache
def _blank_pattern() -> str:
    """An RE2 pattern for "empty or only whitespace", whitespace being exactly what Python's
    ``str.strip()`` removes (``str.isspace``: it includes U+001C..U+001F, which RE2's ``\\s``
    and Arrow's trim functions do not)."""
    spaces = "".join(f"\\x{{{c:x}}}" for c in range(sys.maxunicode + 1) if chr(c).isspace())
    return f"^[{spaces}]*$"


def _as_text(values: pa.Array) -> pa.Array:
    """Each value as ``str(value)`` would write it, nulls kept: strings as they are, integers
    cast by Arrow (same digits), anything else (floats, booleans, lists) through Python, one
    batch at a time."""
    t = values.type
    if pa.types.is_string(t):
        return values
    if pa.types.is_large_string(t) or pa.types.is_string_view(t) or pa.types.is_integer(t):
        return pc.cast(values, pa.string())
    return pa.array([None if v is None else str(v) for v in values.to_pylist()], pa.string())


def _texts(table: pa.Table, source: KeySource) -> tuple[pa.ChunkedArray, np.ndarray]:
    """The key's value of every row as text (string columns as they are: no copy of a
    memory-mapped column) and a mask of rows where it is missing (null, empty or whitespace)."""
    texts, blanks = [], []
    for chunk in table.column(source.column).chunks:
        values = pc.struct_field(chunk, source.meta_field) if source.meta_field is not None else chunk
        text = _as_text(values)
        texts.append(text)
        blanks.append(pc.fill_null(pc.match_substring_regex(text, _blank_pattern()), True)
                      .to_numpy(zero_copy_only=False))
    return pa.chunked_array(texts, pa.string()), (np.concatenate(blanks) if blanks else np.empty(0, bool))


def key_column(table: pa.Table, by: KeySource, fallback: KeySource) -> tuple[pa.Array, int]:
    """The group key of each row (``"<by>\x1f<value>"``, or ``"<fallback>\x1f<value>"`` where
    the ``by`` value is missing) and how many rows used the fallback."""
    by_text, missing = _texts(table, by)
    keys = pc.binary_join_element_wise(pa.scalar(f"{by.name}\x1f"), by_text, "").combine_chunks()
    if not missing.any():
        return keys, 0
    fb_text, fb_missing = _texts(table, fallback)
    if (missing & fb_missing).any():
        raise ValueError(f"split: a row has neither {by.name!r} nor {fallback.name!r}")
    fb_keys = pc.binary_join_element_wise(pa.scalar(f"{fallback.name}\x1f"), fb_text, "").combine_chunks()
    return pc.if_else(pa.array(missing), fb_keys, keys), int(missing.sum())


def _rows(dataset: Dataset, start: int, stop: int, by: KeySource, fallback: KeySource) -> pa.Table:
    """The key columns of rows ``start:stop``: a zero-copy slice of the memory-mapped table
    (a copy of just these columns where the dataset is a selection of rows)."""
    return dataset.select_columns(sorted({by.column, fallback.column})).with_format("arrow")[start:stop]


def _group(chunks: list[pa.Array], with_keys: bool = False) -> tuple[pa.Array | None, np.ndarray, np.ndarray]:
    """Group equal keys by sorting them (less memory than a hash table of every distinct key).
    Returns the distinct keys in ascending order (when ``with_keys``), the rank of each row's
    key among them (int32) and the rows per key. The general path of :func:`group_rows`, and
    the reducers' merge on Ray.

    Arrow compares strings byte by byte, and UTF-8 byte order is code point order, which is
    Python's ``sorted`` order for str: ranks follow the order the assignment expects."""
    keys = pa.chunked_array(chunks, pa.string())
    n = len(keys)
    if not n:
        return (pa.array([], pa.string()) if with_keys else None), np.empty(0, np.int32), np.empty(0, np.int64)
    order = pc.sort_indices(keys).to_numpy(zero_copy_only=False)
    ordered = keys.take(order).combine_chunks()
    del keys
    starts = np.ones(n, dtype=bool)
    starts[1:] = ~pc.equal(ordered.slice(1), ordered.slice(0, n - 1)).to_numpy(zero_copy_only=False)
    distinct = ordered.filter(pa.array(starts)) if with_keys else None
    del ordered
    rank = np.empty(n, dtype=np.int32)
    rank[order] = np.cumsum(starts, dtype=np.int32) - 1
    first = np.flatnonzero(starts)
    return distinct, rank, np.diff(first, append=n).astype(np.int64)


def _runs(text: pa.ChunkedArray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The positions of the rows selected by ``rows``, ordered by their text, and True where a
    new value starts. Neighbours are compared a slice at a time, so no sorted copy of the
    column is ever whole in memory."""
    selected = int(rows.sum())
    if selected * 4 < len(rows):  # few rows (say, the few with no patient id): sort a copy of just those
        positions = np.flatnonzero(rows)
        order = positions[pc.sort_indices(text.take(positions)).to_numpy(zero_copy_only=False)]
        del positions
    else:
        order = pc.sort_indices(text).to_numpy(zero_copy_only=False)
        order = order[rows[order]]
    starts = np.ones(len(order), dtype=bool)
    for a in range(0, len(order) - 1, KEY_BATCH):
        values = text.take(order[a:a + KEY_BATCH + 1]).combine_chunks()
        same = pc.equal(values.slice(1), values.slice(0, len(values) - 1))
        starts[a + 1:a + len(values)] = ~same.to_numpy(zero_copy_only=False)
    return order, starts


def group_rows(table: pa.Table, by: KeySource, fallback: KeySource,
               with_keys: bool = False) -> tuple[pa.Array | None, np.ndarray, np.ndarray, int]:
    """Group the rows of ``table`` by their key: (the distinct keys in ascending order when
    ``with_keys``, the rank of each row's key among them as int32, rows per key, rows that used
    the fallback).

    A key is ``"<name>\x1f<value>"``. Keys of the same source sort as their values do, and
    keys of two sources never interleave (their prefixes differ before either ends), so each
    source is sorted on its own column: for string columns the memory-mapped values
    themselves, never a copy of every key. Only names that contain ``\x1f`` (where prefixes
    could run into values) take the general path that writes every key out."""
    if "\x1f" in by.name or "\x1f" in fallback.name:
        chunks, without = [], 0
        for off in range(0, table.num_rows, KEY_BATCH):
            keys, w = key_column(table.slice(off, KEY_BATCH), by, fallback)
            chunks.append(keys)
            without += w
        distinct, rank, sizes = _group(chunks, with_keys)
        return distinct, rank, sizes, without
    by_text, missing = _texts(table, by)
    without = int(missing.sum())
    parts = [(by, by_text, ~missing)]
    if without:
        fb_text, fb_missing = _texts(table, fallback)
        if (missing & fb_missing).any():
            raise ValueError(f"split: a row has neither {by.name!r} nor {fallback.name!r}")
        parts.append((fallback, fb_text, missing))
        parts.sort(key=lambda part: f"{part[0].name}\x1f")
    rank = np.empty(table.num_rows, dtype=np.int32)
    sizes, keys, offset = [], [], 0
    for source, text, rows in parts:
        order, starts = _runs(text, rows)
        rank[order] = np.cumsum(starts, dtype=np.int32) + (offset - 1)
        first = np.flatnonzero(starts)
        sizes.append(np.diff(first, append=len(order)).astype(np.int64))
        if with_keys:
            values = text.take(order[first]).combine_chunks()
            keys.append(pc.binary_join_element_wise(pa.scalar(f"{source.name}\x1f"), values, ""))
        offset += len(first)
        del order, starts, first  # before the next source's sort
    distinct = (pa.concat_arrays(keys) if keys else pa.array([], pa.string())) if with_keys else None
    return distinct, rank, np.concatenate(sizes), without


# -- assignment ------------------------------------------------------------------------------
def assign_codes(sizes: np.ndarray, ratios: Mapping[str, float], seed: int) -> tuple[list[str], np.ndarray]:
    """Map each group to a split: largest groups first, each to the split with the largest
    deficit against its target row count; the seed orders groups of equal size.

    ``sizes``: rows per group, groups in ascending order of their keys. Returns the split
    names (those with a ratio above 0, in the ratios' order) and one code per group into them.
    """
    names = [name for name, r in ratios.items() if r > 0]
    sizes = np.asarray(sizes, dtype=np.int64)
    n = len(sizes)
    total = int(sizes.sum())
    targets = [ratios[name] * total for name in names]
    # The seeded shuffle of the sorted keys: Random.shuffle's swaps depend only on the length,
    # so shuffling positions 0..n-1 (4-byte C ints, not a list of Python objects) gives the same order.
    positions = array("i", range(n))
    random.Random(seed).shuffle(positions)
    shuffled = np.frombuffer(positions, dtype=np.intc) if n else np.empty(0, np.intc)
    by_size = sizes[shuffled]
    np.negative(by_size, out=by_size)
    order = shuffled[np.argsort(by_size, kind="stable")]  # stable: equal sizes keep the seeded order
    del by_size, positions, shuffled
    chosen = array("B" if len(names) < 256 else "I")
    assigned = [0] * len(names)
    rest = range(1, len(names))
    for size in memoryview(sizes[order]):  # Python ints one at a time, no list of them
        best, best_deficit, best_target = 0, targets[0] - assigned[0], targets[0]
        for s in rest:  # max over (deficit, target); the first split wins a tie
            deficit = targets[s] - assigned[s]
            if deficit > best_deficit or (deficit == best_deficit and targets[s] > best_target):
                best, best_deficit, best_target = s, deficit, targets[s]
        chosen.append(best)
        assigned[best] += size
    codes = np.empty(n, dtype=np.uint8 if len(names) < 256 else np.uint32)
    codes[order] = np.frombuffer(chosen, dtype=codes.dtype) if n else codes[:0]
    return names, codes


def assign_groups(sizes: Mapping[str, int], ratios: Mapping[str, float], seed: int) -> dict[str, str]:
    """:func:`assign_codes` for a mapping group -> size (small inputs, tests)."""
    keys = sorted(sizes)
    names, codes = assign_codes(np.fromiter((sizes[k] for k in keys), np.int64, len(keys)), ratios, seed)
    return {k: names[c] for k, c in zip(keys, codes.tolist())}


# -- grouping: here or on Ray ----------------------------------------------------------------
@dataclass
class Grouping:
    """What the split needs from the grouping: sizes per group (in key order), the split code
    of every row, and the count of rows that used the fallback key."""

    sizes: np.ndarray
    group_codes: np.ndarray
    row_codes: np.ndarray
    without: int
    remote_tasks: int = 0


Assign = Callable[[np.ndarray], np.ndarray]


def _local_split(dataset: Dataset, by: KeySource, fallback: KeySource, assign: Assign) -> Grouping:
    _, rank, sizes, without = group_rows(_rows(dataset, 0, len(dataset), by, fallback), by, fallback)
    group_codes = assign(sizes)
    return Grouping(sizes, group_codes, group_codes[rank], without)


def _partition(keys: pa.Array, parts: int) -> np.ndarray:
    """A partition in ``range(parts)`` per key, the same in every process (a polynomial hash of
    the key's UTF-8 bytes, a slice of keys at a time; Python's ``hash`` is salted per process)."""
    out = np.zeros(len(keys), np.int64)
    if parts == 1:
        return out
    for a in range(0, len(keys), KEY_BATCH):
        part = pc.cast(keys.slice(a, KEY_BATCH), pa.large_string())
        offsets = np.frombuffer(part.buffers()[1], np.int64)[part.offset:part.offset + len(part) + 1]
        lo = int(offsets[0])
        data = np.frombuffer(part.buffers()[2], np.uint8)[lo:int(offsets[-1])].astype(np.uint64)
        lengths = np.diff(offsets)
        within = np.arange(len(data), dtype=np.int64) - np.repeat(offsets[:-1] - lo, lengths)
        powers = np.cumprod(np.full(int(lengths.max()), 0x100000001B3, np.uint64), dtype=np.uint64)
        with np.errstate(over="ignore"):
            h = np.add.reduceat(data * powers[within], offsets[:-1] - lo)  # keys are never empty
            h ^= h >> np.uint64(29)
            h *= np.uint64(0xBF58476D1CE4E5B9)
            h ^= h >> np.uint64(32)
        out[a:a + len(part)] = (h % np.uint64(parts)).astype(np.int64)
    return out


def _count_range(dataset: Dataset, start: int, stop: int, by: KeySource, fallback: KeySource,
                 parts: int) -> tuple:
    """Ray map task: keys of rows ``start:stop`` counted, then split by hash partition.
    Returns (pid and fallback count, row -> local key index, local keys, then per partition
    its (keys, counts))."""
    distinct, index, counts, without = group_rows(_rows(dataset, start, stop, by, fallback), by, fallback, True)
    part = _partition(distinct, parts)
    out = [(os.getpid(), without), index, distinct]
    for j in range(parts):
        sel = np.flatnonzero(part == j)
        out.append((distinct.take(pa.array(sel)), counts[sel]))
    return tuple(out)


def _merge_counts(*pieces: tuple[pa.Array, np.ndarray]) -> tuple[pa.Array, np.ndarray]:
    """Ray reduce task: one partition's (key, count) pieces from every range, summed per key."""
    distinct, rank, _ = _group([k for k, _ in pieces], with_keys=True)
    counts = np.concatenate([c for _, c in pieces])
    return distinct, np.bincount(rank, weights=counts, minlength=len(distinct)).astype(np.int64)


def _label_range(index: np.ndarray, local_keys: pa.Array, sorted_keys: pa.Array, group_codes: np.ndarray) -> np.ndarray:
    """Ray task: the split code of each row of one range, from the assignment of all groups."""
    where = pc.index_in(local_keys, value_set=sorted_keys).to_numpy(zero_copy_only=False).astype(np.int64)
    return group_codes[where][index]


def _ray_split(dataset: Dataset, by: KeySource, fallback: KeySource, assign: Assign) -> Grouping:
    """The grouping as a groupby on the key, in Ray tasks: map tasks over row ranges open the
    dataset themselves (a memory-mapped ``Dataset`` pickles as its file paths), count their
    keys and hash-partition them; one reduce task per partition sums the counts. The driver
    holds only the distinct keys and their sizes (Arrow and numpy) to run the assignment;
    label tasks then turn each range's rows into split codes, one byte per row."""
    import ray

    from meddata.engine.ray_ops import get

    n = len(dataset)
    cpus = max(int(ray.cluster_resources().get("CPU", 1)), 1)
    tasks = max(1, min(4 * cpus, -(-n // RAY_ROWS_PER_TASK)))
    bounds = np.linspace(0, n, tasks + 1).astype(np.int64).tolist()
    parts = min(tasks, RAY_MAX_PARTITIONS)
    data = ray.put(dataset)
    count = ray.remote(_count_range).options(num_returns=3 + parts)
    merge, label = ray.remote(_merge_counts), ray.remote(_label_range)
    # ray_ops.get raises a task's own error: "split: a row has neither ..." stays one line
    maps = [count.remote(data, a, b, by, fallback, parts) for a, b in zip(bounds, bounds[1:])]
    merged = get([merge.remote(*[m[3 + j] for m in maps]) for j in range(parts)])
    meta = get([m[0] for m in maps])
    sorted_keys, rank, _ = _group([k for k, _ in merged], with_keys=True)  # distinct already
    sizes = np.empty(len(rank), np.int64)
    sizes[rank] = np.concatenate([c for _, c in merged])
    del merged, rank
    group_codes = assign(sizes)
    keys_ref, codes_ref = ray.put(sorted_keys), ray.put(group_codes)
    del sorted_keys
    row_codes = np.concatenate(get([label.remote(m[1], m[2], keys_ref, codes_ref) for m in maps]))
    driver = os.getpid()
    return Grouping(sizes, group_codes, row_codes.astype(group_codes.dtype, copy=False),
                    sum(w for _, w in meta), remote_tasks=sum(pid != driver for pid, _ in meta))


# -- the step --------------------------------------------------------------------------------
@register
class Split(GlobalStep):
    name = "split"
    description = ("Patient-aware train/validation/test split: whole groups (meta.patient_id, else the row "
                   "id) per split, seeded, row shares close to the ratios.")
    Params = SplitParams
    extra_features = {SPLIT_COLUMN: Value("string")}

    def apply(self, dataset: Dataset, ctx: StepContext) -> GlobalResult:
        p: SplitParams = self.params
        columns = list(dataset.column_names)
        by, fallback = _key_source(p.by, columns), _key_source(p.fallback, columns)
        seed = ctx.seed if p.seed is None else p.seed
        names: list[str] = []

        def assign(sizes: np.ndarray) -> np.ndarray:
            found, codes = assign_codes(sizes, p.ratios, seed)
            names.extend(found)
            return codes

        if ctx.executor == "ray" and len(dataset):
            import ray

            if not ray.is_initialized():
                raise RuntimeError("split: the ray executor needs a Ray cluster joined first (ray.init)")
            grouping = _ray_split(dataset, by, fallback, assign)
            self.stat_update("split.ray_tasks", grouping.remote_tasks)
        else:
            grouping = _local_split(dataset, by, fallback, assign)
        self.stat_update("split.groups", len(grouping.sizes))
        self.stat_update("split.rows_without_key", grouping.without)
        # One reference per row to one of a few shared name strings (8 bytes a row, no new objects).
        labels = np.array(names, dtype=object)[grouping.row_codes] if names else np.empty(0, object)
        return GlobalResult(source=dataset, new_columns={SPLIT_COLUMN: labels},
                            report=self._report(grouping, names, seed))

    def _report(self, grouping: Grouping, names: list[str], seed: int) -> dict[str, Any]:
        """Counts only: group keys may be patient identifiers and never leave the step."""
        p: SplitParams = self.params
        k = len(names)
        rows = np.bincount(grouping.group_codes, weights=grouping.sizes, minlength=k) if k else []
        groups = np.bincount(grouping.group_codes, minlength=k) if k else []
        rows_of = {name: int(rows[i]) for i, name in enumerate(names)}
        groups_of = {name: int(groups[i]) for i, name in enumerate(names)}
        total = int(grouping.sizes.sum()) or 1
        order = sorted(p.ratios, key=lambda s: (SPLIT_NAMES_ORDER.index(s) if s in SPLIT_NAMES_ORDER else 9, s))
        return {
            "by": p.by,
            "seed": seed,
            "groups": len(grouping.sizes),
            "rows_without_key": grouping.without,
            "splits": {
                name: {"rows": rows_of.get(name, 0), "groups": groups_of.get(name, 0),
                       "share": round(rows_of.get(name, 0) / total, 4), "target": p.ratios[name]}
                for name in order
            },
        }
