"""Distributed building blocks for global steps on a Ray cluster: a shuffle and connected components.

Global steps (exact and near-duplicate detection) reduce every row to a few compact values
and then group equal values over the whole dataset. On Ray that grouping is a shuffle, so
no process ever holds every row's values, and the caller (the driver, or a Ray task running
a whole global step) holds no texts:

* :func:`map_ranges` – one task per row range. Each task opens its rows itself from a
  picklable source (a ``datasets.Dataset`` over memory-mapped Arrow shards pickles as its
  file paths, so texts never travel through the object store), returns a small ``info``
  to the caller (e.g. one length per row) and hash-partitions its records (columns of
  numpy arrays) into P objects that stay in the object store.
* :func:`reduce_partitions` – one task per partition, given that partition of every task
  of the previous stage: a groupby. It may partition its own records again (a second
  shuffle) and leave ``data`` (e.g. graph edges) in the object store for the next stage.
* :func:`components` – connected components of edge sets that stay in the object store:
  rounds of min-label hooking (each root with an edge to a smaller root points to the
  smallest such root) over the edge partitions, then pointer jumping over the labels in
  the caller (one int64 per row), until no edge joins two roots. Each round contracts the
  edges to edges between roots, so later rounds touch only what is still unjoined.

Tasks are spread over the cluster's nodes (``SPREAD``); :data:`TASK_NODES` counts where
they ran. A task's exception is raised in the caller as itself (not wrapped in Ray's
error). Works from the driver and from inside a Ray task (nested tasks). Ray is imported
on first use: the local engine never needs it.
"""

from __future__ import annotations

import functools
import logging
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

logger = logging.getLogger("meddata")

#: Columns of equal length: what a task sends to the next stage, partition by partition.
Records = dict[str, np.ndarray]

#: Ray node id -> number of tasks of :func:`map_ranges`, :func:`reduce_partitions` and
#: :func:`components` that ran there, in this process (shows where the work went).
TASK_NODES: Counter[str] = Counter()

#: Rows per map task: bounded, so one task's texts stay small and there are enough tasks to
#: spread (several per CPU), but never so few that per-task overhead dominates.
MIN_TASK_ROWS = 2_000
MAX_TASK_ROWS = 50_000
#: Ray keeps a task's return values under ~100 KB in the memory of the process that submitted
#: the task (the caller) instead of the object store. Given the records' size per row,
#: :func:`map_ranges` makes each task's partitions at least this big, so a shuffle of bulky
#: records (MinHash band keys) stays out of the caller even with hundreds of partitions.
MIN_PARTITION_BYTES = 128 * 1024


@dataclass
class Out:
    """What one task function returns.

    ``info`` goes back to the caller (keep it compact: numpy arrays, counts). ``data`` stays
    in the object store; the caller gets its reference. ``keys`` (uint64, one per record,
    already well mixed) decide the partition of each record: ``key % partitions``."""

    info: Any = None
    data: Any = None
    keys: np.ndarray | None = None
    records: Records | None = None


@dataclass
class Stage:
    """The outcome of one stage: per task, in task order, its ``info`` and a reference to
    its ``data``; ``parts[p]`` holds partition ``p`` of every task (references)."""

    infos: list[Any]
    data: list[Any]
    parts: list[list[Any]] = field(default_factory=list)
    spans: list[tuple[int, int]] = field(default_factory=list)


def _ray():
    import ray

    return ray


def cluster_cpus() -> int:
    """CPUs of the cluster this process is connected to (at least 1)."""
    return max(1, int(_ray().cluster_resources().get("CPU", 1)))


def default_partitions() -> int:
    """Partitions of a shuffle: one per CPU of the cluster (at least 2, at most 256)."""
    return min(256, max(2, cluster_cpus()))


def plan_spans(n: int, workers: int, rows_per_task: int | None = None,
               min_rows: int = MIN_TASK_ROWS) -> list[tuple[int, int]]:
    """Consecutive ``(start, stop)`` row ranges covering ``0..n``: about four per worker,
    each between ``min_rows`` and :data:`MAX_TASK_ROWS` rows unless given."""
    if n <= 0:
        return []
    size = rows_per_task or min(MAX_TASK_ROWS, max(min_rows, math.ceil(n / (4 * max(1, workers)))))
    return [(a, min(a + size, n)) for a in range(0, n, size)]


def concat_records(parts: Sequence[Records]) -> Records:
    """One partition's records from every task of a stage, as one set of columns."""
    if not parts:
        return {}
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def _partition(out: Out, partitions: int) -> list[Records]:
    if partitions == 0:
        return []
    if out.records is None or out.keys is None:
        raise ValueError("a task of a partitioning stage must return keys and records")
    which = (np.asarray(out.keys, dtype=np.uint64) % np.uint64(partitions)).astype(np.int64)
    order = np.argsort(which, kind="stable")
    bounds = np.searchsorted(which[order], np.arange(partitions + 1))
    return [{name: col[order[bounds[p]:bounds[p + 1]]] for name, col in out.records.items()}
            for p in range(partitions)]


def _returns(out: Out, partitions: int) -> tuple:
    node = _ray().get_runtime_context().get_node_id()
    return ((out.info, node), out.data, *_partition(out, partitions))


def _pack(value: Any) -> bytes:
    """``value`` pickled by the caller and opened by the task itself (:func:`_unpack`), so a
    failure to open it (a shard this node cannot see) is the task's own, clear error."""
    return _ray().cloudpickle.dumps(value)


def _unpack(blob: bytes) -> Any:
    try:
        return _ray().cloudpickle.loads(blob)
    except OSError as err:
        node = _ray().get_runtime_context().get_node_id()
        raise type(err)(f"{err} (on Ray node {node[:12]}: a step's input must be on a path every node "
                        "of the cluster sees)") from None


def _map_task(fn: Callable[..., Out], source: bytes, start: int, stop: int, args: bytes, partitions: int) -> tuple:
    return _returns(fn(_unpack(source), start, stop, *_unpack(args)), partitions)


def _reduce_task(fn: Callable[..., Out], args: bytes, partitions: int, *parts: Records) -> tuple:
    return _returns(fn(concat_records(parts), *_unpack(args)), partitions)


def _hook_task(edges: np.ndarray, labels: np.ndarray) -> tuple:
    """One round of hooking over one edge set: the edges mapped onto the current roots,
    without loops and repeats (the contracted edge set, left in the object store), and per
    root that has a smaller neighbour root, the smallest one (sent to the caller)."""
    edges = np.asarray(edges).reshape(-1, 2)
    lu, lv = labels[edges[:, 0]], labels[edges[:, 1]]
    keep = lu != lv
    lo, hi = np.minimum(lu, lv)[keep], np.maximum(lu, lv)[keep]
    order = np.lexsort((lo, hi))
    lo, hi = lo[order], hi[order]
    new = np.ones(len(hi), dtype=bool)
    new[1:] = (hi[1:] != hi[:-1]) | (lo[1:] != lo[:-1])
    lo, hi = lo[new], hi[new]
    first = np.ones(len(hi), dtype=bool)
    first[1:] = hi[1:] != hi[:-1]
    node = _ray().get_runtime_context().get_node_id()
    return ((hi[first], lo[first]), node), np.stack((lo, hi), axis=1)


@functools.lru_cache(maxsize=64)
def _remote(fn: Callable, num_returns: int):
    return _ray().remote(fn).options(num_returns=num_returns, scheduling_strategy="SPREAD")


def get(refs: Any) -> Any:
    """``ray.get(refs)``, raising a failed task's own exception (a meddata error keeps its type
    and one-line message) instead of Ray's wrapper with the remote traceback."""
    ray = _ray()
    try:
        return ray.get(refs)
    except (ray.exceptions.RayTaskError, ray.exceptions.RaySystemError) as err:
        cause = getattr(err, "cause", None) or getattr(err, "client_exc", None)
        if isinstance(cause, Exception):
            raise cause from None
        raise


def _collect(outs: list[list[Any]], desc: str, progress: bool = True) -> list[Any]:
    """Each task's ``info`` (in task order), with a progress bar; counts where tasks ran."""
    from tqdm.auto import tqdm

    ray = _ray()
    heads = [o[0] for o in outs]
    index = {ref: k for k, ref in enumerate(heads)}
    infos: list[Any] = [None] * len(heads)
    pending = list(heads)
    bar = tqdm(total=len(heads), desc=desc, unit=" tasks", leave=False, disable=not progress or len(heads) < 2)
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                info, node = get(ref)
                infos[index[ref]] = info
                TASK_NODES[node] += 1
                bar.update(1)
    except BaseException:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
    finally:
        bar.close()
    logger.debug("%s: %d Ray tasks, %d nodes so far", desc, len(heads), len(TASK_NODES))
    return infos


def _stage(outs: list[list[Any]], partitions: int, desc: str, spans: list[tuple[int, int]] | None = None) -> Stage:
    infos = _collect(outs, desc)
    parts = [[o[2 + p] for o in outs] for p in range(partitions)]
    return Stage(infos=infos, data=[o[1] for o in outs], parts=parts, spans=list(spans or []))


def map_ranges(fn: Callable[..., Out], source: Any, n: int, *, partitions: int = 0, args: tuple = (),
               rows_per_task: int | None = None, record_bytes: int = 0, desc: str = "map") -> Stage:
    """``fn(source, start, stop, *args) -> Out`` as one Ray task per row range of ``0..n``.

    ``source`` is put in the object store once and every task opens its rows from it; with
    ``partitions`` > 0 each task's records are split into that many partitions by key.
    ``record_bytes``: about how many bytes of records a row makes; tasks then get enough rows
    for partitions of :data:`MIN_PARTITION_BYTES`. ``fn`` must be picklable by reference (a
    module-level function)."""
    ray = _ray()
    min_rows = max(MIN_TASK_ROWS, math.ceil(partitions * MIN_PARTITION_BYTES / record_bytes)) if record_bytes \
        else MIN_TASK_ROWS
    spans = plan_spans(n, cluster_cpus(), rows_per_task, min_rows)
    if not spans:
        return Stage(infos=[], data=[], parts=[[] for _ in range(partitions)], spans=[])
    src, packed = ray.put(_pack(source)), ray.put(_pack(args))  # once for every task
    task = _remote(_map_task, 2 + partitions)
    outs = [task.remote(fn, src, a, b, packed, partitions) for a, b in spans]
    return _stage(outs, partitions, desc, spans)


def reduce_partitions(fn: Callable[..., Out], parts: list[list[Any]], *, partitions: int = 0, args: tuple = (),
                      desc: str = "reduce") -> Stage:
    """``fn(records, *args) -> Out`` as one Ray task per partition, ``records`` being that
    partition of every task of the previous stage, concatenated (a groupby's reduce side).
    With ``partitions`` > 0 the task's records are partitioned again (the next shuffle)."""
    task = _remote(_reduce_task, 2 + partitions)
    packed = _ray().put(_pack(args))
    outs = [task.remote(fn, packed, partitions, *refs) for refs in parts if refs]
    return _stage(outs, partitions, desc)


def pointer_jump(labels: np.ndarray) -> np.ndarray:
    """Every node's label replaced by its root's (``labels[labels]`` until nothing changes)."""
    while True:
        up = labels[labels]
        if np.array_equal(up, labels):
            return labels
        labels = up


@dataclass
class Components:
    """Connected components: ``labels[i]`` is the smallest node of ``i``'s component."""

    labels: np.ndarray
    rounds: int  # hooking rounds over the edge partitions (the last one finds nothing to join)

    @property
    def count(self) -> int:
        return int(np.count_nonzero(self.labels == np.arange(len(self.labels))))


def components(n: int, edges: Sequence[Any], *, max_rounds: int = 200, desc: str = "components") -> Components:
    """Connected components of ``n`` nodes and the edge sets ``edges`` (object references or
    arrays of shape ``(k, 2)``; each is one task per round): min-label hooking with pointer
    jumping (see the module docstring). The caller holds one int64 label per node."""
    ray = _ray()
    labels = np.arange(n, dtype=np.int64)
    pending = [e for e in edges if not isinstance(e, np.ndarray) or len(e)]
    task = _remote(_hook_task, 2)
    rounds = 0
    while pending:
        if rounds == max_rounds:
            raise RuntimeError(f"connected components did not converge in {max_rounds} rounds")
        rounds += 1
        current = ray.put(labels)
        outs = [task.remote(e, current) for e in pending]
        infos = _collect(outs, f"{desc} round {rounds}", progress=False)  # rounds are short: no bar each
        del current
        hooked = False
        for targets, values in infos:
            if len(targets):
                hooked = True
                labels[targets] = np.minimum(labels[targets], values)  # targets are distinct in one task
        if not hooked:
            break
        labels = pointer_jump(labels)
        pending = [o[1] for o, (targets, _) in zip(outs, infos) if len(targets)]
    return Components(labels=labels, rounds=rounds)
