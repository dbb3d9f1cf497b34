"""Write a finished build: a DatasetDict (``save_to_disk``) plus JSONL/Parquet per split,
the exports the recipe asks for, and configs for LLaMA-Factory, axolotl and the TRL CLI
(:mod:`meddata.toolconfigs`). Columns that no row filled are dropped, so a
messages-only build has exactly ``id, source, messages, meta``."""

from __future__ import annotations

import shutil
from pathlib import Path

from datasets import Dataset, DatasetDict

from meddata.formats import EXPORTERS, write_jsonl
from meddata.recipe import Recipe
from meddata.records import SPLIT_COLUMN

SPLIT_ORDER = ("train", "validation", "test")


def drop_empty_columns(ds: Dataset) -> Dataset:
    keep = {"id", "source", "meta"}
    empty = [
        c for c in ds.column_names
        if c not in keep and (len(ds) == 0 or ds.data.column(c).null_count == ds.data.num_rows)
    ]
    return ds.remove_columns(empty) if empty else ds


def to_splits(ds: Dataset) -> DatasetDict:
    """Group rows by the split step's column; a build without a split step is all 'train'."""
    if SPLIT_COLUMN not in ds.column_names:
        return DatasetDict({"train": drop_empty_columns(ds.flatten_indices())})
    labels = ds[SPLIT_COLUMN]
    names = sorted(set(labels), key=lambda s: (SPLIT_ORDER.index(s) if s in SPLIT_ORDER else 99, s))
    out = {}
    for name in names:
        part = ds.select([i for i, s in enumerate(labels) if s == name]).remove_columns(SPLIT_COLUMN)
        out[name] = drop_empty_columns(part.flatten_indices())
    return DatasetDict(out)


def write_outputs(ds: Dataset, recipe: Recipe, out_dir: Path) -> Path:
    """Write every requested format; return the ``save_to_disk`` folder."""
    splits = to_splits(ds)
    dataset_dir = out_dir / "dataset"
    tmp = out_dir / "dataset.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    # then swap, so a failed write never leaves half a dataset; an empty split needs an
    # explicit shard, or datasets writes none and cannot load the folder back
    splits.save_to_disk(str(tmp), num_shards={k: 1 for k, part in splits.items() if len(part) == 0})
    shutil.rmtree(dataset_dir, ignore_errors=True)
    tmp.rename(dataset_dir)
    formats = set(recipe.output.formats)
    for fmt, folder in (("jsonl", "jsonl"), ("parquet", "parquet")):
        target = out_dir / folder
        shutil.rmtree(target, ignore_errors=True)
        if fmt not in formats:
            continue
        target.mkdir(parents=True)
        for name, part in splits.items():
            if fmt == "jsonl":
                write_jsonl(part, target / f"{name}.jsonl")
            else:
                part.to_parquet(str(target / f"{name}.parquet"))
    exports = out_dir / "exports"
    shutil.rmtree(exports, ignore_errors=True)
    for name in recipe.output.exports:
        if name not in EXPORTERS:
            raise ValueError(f"unknown export {name!r}; available: {', '.join(sorted(EXPORTERS))}")
        exports.mkdir(exist_ok=True)
        for split, part in splits.items():
            EXPORTERS[name](part, exports / f"{name}-{split}.jsonl")
    from meddata.toolconfigs import write_tool_configs  # imported here: it reads this module's split order

    write_tool_configs(splits, recipe.name, out_dir, seed=recipe.seed)
    return dataset_dir
