"""Datasets for training: open a meddata build (or a file, or a Hub id), check that its
rows are the TRL type a trainer needs, and reduce it to the columns TRL reads.

Type checks run on Arrow null counts, not Python rows, so they cost seconds on millions of
rows and happen before any model is loaded. Error messages name the dataset, split, row
and field, never a value (rows may hold clinical text).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meddata.records import ROLES

log = logging.getLogger("meddata.trainers")

#: TRL row types and the columns each one trains on.
TYPE_COLUMNS: dict[str, tuple[str, ...]] = {
    "preference": ("prompt", "chosen", "rejected"),
    "prompt_completion": ("prompt", "completion"),
    "conversational": ("messages",),
    "language_modeling": ("text",),
    "exam": ("question", "options", "answer"),
}
TYPE_WORDS = {
    "preference": "preference rows (prompt/chosen/rejected)",
    "prompt_completion": "prompt/completion rows",
    "conversational": "conversational rows (messages)",
    "language_modeling": "text rows",
    "exam": "exam rows (question/options/answer)",
}
#: Which row types each trainer accepts.
ACCEPTS: dict[str, tuple[str, ...]] = {
    "sft": ("conversational", "prompt_completion", "language_modeling"),
    "pretrain": ("language_modeling",),
    "dpo": ("preference",),
}
FILE_BUILDERS = {".jsonl": "json", ".json": "json", ".ndjson": "json", ".parquet": "parquet", ".csv": "csv"}


class DatasetError(ValueError):
    """A dataset cannot be used as configured; the message says which and why."""


@dataclass(frozen=True)
class SplitInfo:
    name: str
    rows: int
    kind: str


def _file_suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def open_dataset(path: str, base_dir: Path, config_name: str | None = None):
    """A ``DatasetDict`` from a build folder, a saved dataset, a file or a Hub id."""
    from datasets import Dataset, DatasetDict, load_dataset, load_from_disk

    local = Path(path).expanduser()
    if not local.is_absolute():
        local = base_dir / local
    if local.is_dir():
        target = local / "dataset" if (local / "dataset").is_dir() else local
        if not ((target / "dataset_dict.json").exists() or (target / "dataset_info.json").exists()):
            raise DatasetError(f"{local}: not a meddata build folder or a saved dataset "
                               "(no dataset/ folder, dataset_dict.json or dataset_info.json)")
        loaded = load_from_disk(str(target))
        return loaded if isinstance(loaded, DatasetDict) else DatasetDict({"train": loaded})
    if local.is_file():
        builder = FILE_BUILDERS.get(_file_suffix(local))
        if builder is None:
            raise DatasetError(f"{local}: unknown dataset file type; use .jsonl, .json, .parquet or .csv")
        try:
            ds = load_dataset(builder, data_files=str(local), split="train")
        except Exception as exc:  # datasets raises many types; the user needs file + cause
            raise DatasetError(f"{local}: cannot be read as {builder}: {type(exc).__name__}: "
                               f"{str(exc).splitlines()[0][:300]}") from None
        assert isinstance(ds, Dataset)
        return DatasetDict({"train": ds})
    looks_local = path.startswith((".", "/", "~")) or _file_suffix(Path(path)) in FILE_BUILDERS
    if looks_local or path.count("/") != 1:
        raise DatasetError(f"{local}: no such dataset file or folder (and not a Hub id owner/name)")
    try:
        loaded = load_dataset(path, config_name)
    except Exception as exc:
        raise DatasetError(f"Hub dataset {path!r} cannot be loaded: {type(exc).__name__}: "
                           f"{str(exc).splitlines()[0][:300]}") from None
    return loaded


def _present(table, col: str):
    """Boolean Arrow mask: column present, not null and (for lists/strings) not empty."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if col not in table.column_names:
        return pa.array([False] * table.num_rows)
    arr = table.column(col)
    valid = pc.is_valid(arr)
    if pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type):
        return pc.and_(valid, pc.fill_null(pc.greater(pc.list_value_length(arr), 0), False))
    return valid


def type_counts(ds) -> dict[str, int]:
    """Rows per TRL type, with meddata's precedence (preference > prompt_completion > ...)."""
    import pyarrow.compute as pc

    counts = {k: 0 for k in (*TYPE_COLUMNS, "empty")}
    wanted = {c for cols in TYPE_COLUMNS.values() for c in cols} & set(ds.column_names)
    for table in ds.select_columns(sorted(wanted)).with_format("arrow").iter(batch_size=50_000):
        taken = pc.equal(_present(table, "__none__"), True)  # all False
        for kind, cols in (("preference", ("chosen", "rejected")), ("prompt_completion", ("prompt", "completion")),
                           ("conversational", ("messages",)), ("language_modeling", ("text",)),
                           ("exam", ("question",))):
            mask = _present(table, cols[0])
            for col in cols[1:]:
                mask = pc.and_(mask, _present(table, col))
            mask = pc.and_(mask, pc.invert(taken))
            counts[kind] += pc.sum(mask).as_py() or 0
            taken = pc.or_(taken, mask)
        counts["empty"] += table.num_rows - (pc.sum(taken).as_py() or 0)
    return {k: v for k, v in counts.items() if v}


def dataset_kind(ds, where: str) -> str:
    """The single TRL type of a split, or a DatasetError naming the mix."""
    counts = type_counts(ds)
    if not counts:
        raise DatasetError(f"{where}: the split has no rows")
    if "empty" in counts:
        raise DatasetError(f"{where}: {counts['empty']} row(s) have no content (none of text, messages, "
                           "prompt+completion, prompt+chosen+rejected)")
    if len(counts) > 1:
        mix = ", ".join(f"{n} {TYPE_WORDS[k]}" for k, n in counts.items())
        raise DatasetError(f"{where}: the split mixes row types ({mix}); a stage trains on one type, "
                           "so split them into separate datasets or stages")
    return next(iter(counts))


def check_messages(ds, columns: tuple[str, ...], where: str) -> None:
    """Every message has a known role and non-empty string content (TRL's Jinja rendering
    would otherwise fail deep inside a batch). Errors name row and field, never content."""
    import pyarrow as pa
    import pyarrow.compute as pc

    offset = 0
    for table in ds.select_columns(list(columns)).with_format("arrow").iter(batch_size=50_000):
        for col in columns:
            arr = table.column(col).combine_chunks()
            if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
                continue  # TRL's standard (non-conversational) form: plain strings
            if not (pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type)):
                raise DatasetError(f"{where}: field '{col}' must be a list of {{role, content}} messages")
            flat = pc.list_flatten(arr)
            parents = pc.list_parent_indices(arr)
            if not pa.types.is_struct(flat.type) or {"role", "content"} - {f.name for f in flat.type}:
                raise DatasetError(f"{where}: field '{col}' must be a list of {{role, content}} messages")
            roles = flat.field("role")
            contents = flat.field("content")
            bad_role = pc.invert(pc.fill_null(pc.is_in(roles, value_set=_roles_array()), False))
            bad_content = pc.invert(pc.fill_null(pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(contents)), 0),
                                                 False))
            for mask, what in ((bad_role, f"role must be one of {ROLES}"), (bad_content, "content is empty")):
                idx = pc.indices_nonzero(mask)
                if len(idx):
                    first = idx[0].as_py()
                    row = parents[first].as_py() + offset
                    raise DatasetError(f"{where} row {row}: field '{col}': a message {what} "
                                       f"({len(idx)} message(s) in this batch)")
        offset += table.num_rows


def _roles_array():
    import pyarrow as pa

    return pa.array(list(ROLES))


def stage_splits(
    dsd: Mapping[str, Any], split: str, eval_split: str | None, eval_fraction: float | None, seed: int,
    where: str, max_rows: int | None = None,
) -> tuple[Any, Any | None]:
    """(train, eval) datasets as configured. ``eval_split="auto"`` uses "validation" when present;
    ``max_rows`` keeps the first rows of the train split (before any eval hold-out)."""
    if split not in dsd:
        raise DatasetError(f"{where}: no split {split!r}; the dataset has {sorted(dsd)}")
    train = dsd[split]
    if max_rows:
        train = train.select(range(min(max_rows, len(train))))
    if eval_split == "auto":
        eval_split = "validation" if "validation" in dsd and split != "validation" else None
    if eval_split is not None:
        if eval_split not in dsd:
            raise DatasetError(f"{where}: no eval split {eval_split!r}; the dataset has {sorted(dsd)}")
        return train, dsd[eval_split]
    if eval_fraction:
        if len(train) < 4:
            raise DatasetError(f"{where}: eval_fraction needs at least 4 rows, the split has {len(train)}")
        parts = train.train_test_split(test_size=eval_fraction, seed=seed)
        return parts["train"], parts["test"]
    return train, None


def for_trl(ds, kind: str):
    """Only the columns TRL reads for ``kind``: meddata's id/source/meta and the unused
    content columns are dropped (TRL would otherwise treat them as model inputs)."""
    keep = [c for c in TYPE_COLUMNS[kind] if c in ds.column_names]
    return ds.select_columns(keep)
