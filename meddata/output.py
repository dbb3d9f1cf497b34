"""Write a finished build: a DatasetDict folder (``datasets.load_from_disk``) plus JSONL/Parquet
per split and the exports the recipe asks for (the front door then adds tool configs and the
card: :mod:`meddata.publish`). Columns that no row filled are dropped, so a messages-only
build has exactly ``id, source, messages, meta``.

The final step's rows are streamed once, in Arrow batches, into one Arrow file per split
(no per-split ``select``/``flatten_indices``); JSONL and Parquet are then written from those
memory-mapped files, batch by batch.
"""

from __future__ import annotations

import json
import secrets
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from datasets import Dataset, DatasetDict, Features

from meddata.engine.checkpoint import Checkpoint
from meddata.engine.sink import read_shards
from meddata.formats import EXPORTERS, write_jsonl
from meddata.recipe import OutputConfig
from meddata.records import SPLIT_COLUMN, SPLIT_ORDER

BATCH = 10_000
DATA_FILE = "data-00000-of-00001.arrow"


def empty_columns(table: pa.Table) -> set[str]:
    """Columns no row filled (``id``, ``source`` and ``meta`` always stay): left out of the output."""
    return {c for c in table.column_names
            if c not in ("id", "source", "meta") and (table.num_rows == 0 or table.column(c).null_count == table.num_rows)}


def _split_names(table: pa.Table) -> list[str]:
    if SPLIT_COLUMN not in table.column_names or table.num_rows == 0:
        return ["train"]
    names = [v for v in pc.unique(table.column(SPLIT_COLUMN)).to_pylist() if v is not None]
    return sorted(names or ["train"], key=lambda s: (SPLIT_ORDER.index(s) if s in SPLIT_ORDER else 99, s))


def _write_split_folder(folder: Path, features: Features) -> None:
    """The two small files ``load_from_disk`` needs next to a split's Arrow file."""
    (folder / "state.json").write_text(json.dumps({
        "_data_files": [{"filename": DATA_FILE}], "_fingerprint": secrets.token_hex(8),
        "_format_columns": None, "_format_kwargs": {}, "_format_type": None,
        "_output_all_columns": False, "_split": None,
    }, indent=2))
    (folder / "dataset_info.json").write_text(json.dumps({
        "citation": "", "description": "", "features": features.to_dict(), "homepage": "", "license": "",
    }, indent=2))


def write_dataset_dict(ds: Dataset, target: Path, batches: Iterable[pa.RecordBatch] | None = None) -> list[str]:
    """Stream ``ds`` into one Arrow file per split under ``target``; return the split names.
    ``batches``: ``ds``'s rows read from files (the runner passes its checkpoint's shards, so the
    driver does not keep the memory-mapped pages it passed resident)."""
    table = ds.with_format("arrow")[:] if ds._indices is not None else ds.data.table
    names = _split_names(table)
    empty = empty_columns(table)
    columns = [c for c in table.column_names if c != SPLIT_COLUMN and c not in empty]
    features = Features({c: ds.features[c] for c in columns})
    schema = features.arrow_schema
    target.mkdir(parents=True)
    writers = {}
    for name in names:
        (target / name).mkdir()
        writers[name] = pa.ipc.new_stream(str(target / name / DATA_FILE), schema)
    has_split = SPLIT_COLUMN in table.column_names and table.num_rows > 0
    if batches is None or ds._indices is not None:
        batches = (table.slice(off, BATCH).combine_chunks() for off in range(0, table.num_rows, BATCH))
    for part in batches:
        if isinstance(part, pa.RecordBatch):
            part = pa.Table.from_batches([part])
        if not has_split:
            writers["train"].write_table(part.select(columns).cast(schema))
            continue
        labels = part.column(SPLIT_COLUMN)
        for name in names:
            chosen = part.filter(pc.equal(labels, name))
            if chosen.num_rows:
                writers[name].write_table(chosen.select(columns).cast(schema))
    for name, w in writers.items():
        w.close()
        _write_split_folder(target / name, features)
    (target / "dataset_dict.json").write_text(json.dumps({"splits": names}))
    return names


def iter_rows(ds: Dataset) -> Iterator[dict]:
    """Rows of a flat dataset, decoded from Arrow a batch at a time."""
    for batch in ds.data.table.to_batches(max_chunksize=BATCH):
        yield from batch.to_pylist()


def write_outputs(ds: Dataset, output: OutputConfig, out_dir: Path,
                  batches: Iterable[pa.RecordBatch] | None = None) -> tuple[Path, int]:
    """Write every requested format; return the ``load_from_disk`` folder and how many rows it
    holds (counted from the written files, for the conservation check). ``batches``: see
    :func:`write_dataset_dict`."""
    dataset_dir = out_dir / "dataset"
    tmp = out_dir / "dataset.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    names = write_dataset_dict(ds, tmp, batches)  # then swap, so a failed write never leaves half a dataset
    shutil.rmtree(dataset_dir, ignore_errors=True)
    tmp.rename(dataset_dir)
    splits = DatasetDict({name: Dataset.from_file(str(dataset_dir / name / DATA_FILE)) for name in names})
    formats = set(output.formats)
    for fmt, folder in (("jsonl", "jsonl"), ("parquet", "parquet")):
        target = out_dir / folder
        shutil.rmtree(target, ignore_errors=True)
        if fmt not in formats:
            continue
        target.mkdir(parents=True)
        for name, part in splits.items():
            if fmt == "jsonl":
                write_jsonl(iter_rows(part), target / f"{name}.jsonl")
            else:
                with pq.ParquetWriter(str(target / f"{name}.parquet"), part.data.table.schema) as writer:
                    for batch in part.data.table.to_batches(max_chunksize=BATCH):
                        writer.write_batch(batch)
    exports = out_dir / "exports"
    shutil.rmtree(exports, ignore_errors=True)
    for name in output.exports:
        if name not in EXPORTERS:
            raise ValueError(f"unknown export {name!r}; available: {', '.join(sorted(EXPORTERS))}")
        exports.mkdir(exist_ok=True)
        for split, part in splits.items():
            EXPORTERS[name](part, exports / f"{name}-{split}.jsonl")
    return dataset_dir, sum(len(part) for part in splits.values())


def write_outputs_from(source: Checkpoint, output: OutputConfig, out_dir: Path) -> tuple[Path, int]:
    """:func:`write_outputs` for a run's last checkpoint, opened here (a task of the engine, not
    the driver)."""
    return write_outputs(source.open(), output, out_dir, read_shards(list(source.dirs)))
