"""File handling shared by the EHR, dialogue and textbook builders.

What :mod:`meddata.io` does not cover: whole-document files (one note or one FHIR bundle per
file) read with a size cap, JSON arrays read incrementally (ShareGPT files run to gigabytes),
and the checks every builder makes before parsing (empty file, which files a folder holds).
Every problem becomes a :class:`~meddata.steps.Quarantine` naming the file and the line,
never a value from the file (it may hold PHI).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import field_validator

from meddata import io
from meddata.params import InputPath
from meddata.steps import Quarantine, StepParams

PhiStatus = Literal["raw", "deidentified", "not_applicable"]
L = TypeVar("L")

#: Whole-document files (a note, a FHIR bundle) larger than this are quarantined unread.
MAX_DOCUMENT_BYTES = 256 * 1024 * 1024


class SourceParams(StepParams):
    """Parameters every file-reading builder shares."""

    #: A file, or a folder searched recursively with ``glob``.
    path: InputPath
    #: Name stored in the ``source`` column (default: the file or folder name).
    source: str | None = None
    licence: str | None = None
    encoding: str = "utf-8"
    #: File patterns used when ``path`` is a folder (default: the builder's own); one
    #: pattern may be written as a plain string.
    glob: list[str] | None = None

    @field_validator("glob", mode="before")
    @classmethod
    def _one_pattern(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v


def source_name(params: SourceParams, default: str | None = None) -> str:
    root = Path(params.path)
    return params.source or default or root.name.split(".")[0]


def file_source(params: SourceParams, path: Path) -> str:
    """``source`` for the rows of one file: the recipe's, else the file's name without suffixes."""
    return params.source or path.name.split(".")[0]


def id_scope(params: SourceParams, path: Path, source: str) -> str:
    """Prefix for ids taken from the data: the source, plus the file name when ``path`` is a
    folder, since ids repeat across files (MTS-Dialog's train and test splits both start at 0)."""
    return source if Path(params.path).is_file() else f"{source}:{path.name.split('.')[0]}"


def input_files(params: SourceParams, default_patterns: tuple[str, ...],
                only: Sequence[str] | None = None) -> list[Path]:
    """The files to read: ``path`` itself, or the matching files under it (sorted). ``only``
    (``StepContext.files``: this task's slice of that list, listed once by the engine) replaces
    the listing. Raises FileNotFoundError (a one-line CLI error) when a folder holds none."""
    if only is not None:
        return [Path(f) for f in only]
    return io.files_under(Path(params.path), tuple(params.glob or default_patterns))


def if_names_distinct(files: list[Path]) -> list[Path]:
    """``files`` when no two share a name stem (the name up to its first dot), else none.

    File builders make ids from the source, the file's name or stem (:func:`id_scope`) and a
    locator inside the file, so files with distinct stems never give the same id and no row of
    one file is renamed because of another's (:mod:`meddata.builders.rows_out`): their read may be
    split across tasks. Two files with one stem (``a/notes.json``, ``b/notes.json``) may give one
    id twice, which only a read that saw the first can rename: such a read stays whole.
    """
    stems = {path.name.split(".")[0] for path in files}
    return files if len(stems) == len(files) else []


def empty_file(path: Path, display: str) -> Quarantine | None:
    """A quarantine entry for a 0-byte file, so an empty input never passes unnoticed."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        return Quarantine(f"cannot read the file ({exc.strerror})", display, "file")
    return Quarantine("the file is empty (0 bytes)", display, "file") if size == 0 else None


def _decode_error(data: bytes, exc: UnicodeDecodeError, encoding: str, display: str) -> Quarantine:
    line = data.count(b"\n", 0, exc.start) + 1
    return Quarantine(f"not valid {encoding} at byte {exc.start}; {io.ENCODING_HINT}", display, f"line {line}")


def read_document(path: Path, display: str, encoding: str = "utf-8",
                  max_bytes: int = MAX_DOCUMENT_BYTES) -> str | Quarantine:
    """A whole small document (one note, one bundle) as text, or why it cannot be read."""
    if (q := empty_file(path, display)) is not None:
        return q
    with io.open_binary(path) as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        return Quarantine(f"file is over the {max_bytes:,}-byte limit for one document", display, "file")
    try:
        return data.decode(encoding).lstrip("\ufeff")
    except UnicodeDecodeError as exc:
        return _decode_error(data, exc, encoding, display)


def load_json_document(path: Path, display: str, encoding: str = "utf-8",
                       max_bytes: int = MAX_DOCUMENT_BYTES) -> Any | Quarantine:
    """One JSON document per file (a FHIR bundle); parse errors name the line and column."""
    text = read_document(path, display, encoding, max_bytes)
    if isinstance(text, Quarantine):
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        return Quarantine(f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}", display,
                          f"line {exc.lineno}")
    except RecursionError:
        return Quarantine("JSON nested too deeply to parse", display, "file")


def iter_json_items(path: Path, display: str, encoding: str = "utf-8",
                    max_item_chars: int = io.MAX_LINE_BYTES) -> Iterator[tuple[str, Any] | Quarantine]:
    """Items of a JSON array file, parsed one at a time (:func:`meddata.io.iter_json_values`).

    A file holding one object yields that object. Locators are ``item N (line L)``. A syntax
    error or a truncated file ends the file with one quarantine entry naming the line.
    """
    if (q := empty_file(path, display)) is not None:
        yield q
        return
    for item in io.iter_json_values(path, encoding, display=display, max_item_chars=max_item_chars):
        yield item if isinstance(item, Quarantine) else (f"item {item.index} (line {item.line})", item.value)


def csv_header(path: Path, display: str, encoding: str = "utf-8", delimiter: str = ",",
               max_bytes: int = 1 << 20) -> list[str] | Quarantine:
    """The column names of a CSV file, read from its first line only."""
    with io.open_binary(path) as fh:
        first = fh.readline(max_bytes + 1)
    if len(first) > max_bytes:
        return Quarantine(f"header line is over {max_bytes:,} bytes (not a CSV header)", display, "line 1")
    try:
        line = first.decode(encoding).lstrip("\ufeff")
    except UnicodeDecodeError as exc:
        return _decode_error(first, exc, encoding, display)
    return next(csv.reader([line], delimiter=delimiter), [])


def iter_records(path: Path, display: str, fmt: str | None = None, encoding: str = "utf-8",
                 require_records: bool = True, **csv_kwargs: Any) -> Iterator[tuple[str, dict[str, Any]] | Quarantine]:
    """Records of a JSONL / JSON / CSV / TSV file, streamed; an empty file is one quarantine entry,
    and so is a file with no records unless ``require_records`` is False.

    Like :func:`meddata.io.iter_records`, but JSON arrays stream item by item and every
    quarantine entry names the file as the recipe user sees it.
    """
    if (q := empty_file(path, display)) is not None:
        yield q
        return
    fmt = (fmt or io.base_suffix(path).lstrip(".")).lower()
    if fmt == "json":
        items = iter_json_items(path, display, encoding)
    elif fmt in ("jsonl", "ndjson", "csv", "tsv", "parquet"):
        if fmt == "tsv":
            csv_kwargs.setdefault("delimiter", "\t")
        items = io.iter_records(path, fmt, encoding, **csv_kwargs)
    else:
        yield Quarantine(f"unknown file type {fmt!r}; expected jsonl, json, csv or tsv (set 'format:')",
                         display, "file")
        return
    seen = False
    for item in items:
        seen = True
        if isinstance(item, Quarantine):
            yield Quarantine(item.error, display, item.locator)
        elif not isinstance(item[1], dict):
            yield Quarantine(f"expected a JSON object, got {type(item[1]).__name__}", display, item[0])
        else:
            yield item
    if not seen and require_records:
        yield Quarantine("file holds no records (only a header, or blank lines)", display, "file")


def iter_with_layout(
    path: Path, display: str, fmt: str | None, encoding: str, pick: Callable[[dict[str, Any]], L | str],
) -> Iterator[tuple[L, str, dict[str, Any]] | Quarantine]:
    """``(layout, locator, record)`` for the records of a table file, with the layout ``pick``
    finds in the first record. When ``pick`` returns an error message instead, it becomes one
    quarantine entry and the rest of the file is skipped (every record shares that header)."""
    layout: L | None = None
    for item in iter_records(path, display, fmt, encoding):
        if isinstance(item, Quarantine):
            yield item
            continue
        locator, record = item
        if layout is None:
            picked = pick(record)
            if isinstance(picked, str):
                yield Quarantine(picked, display, locator)
                return
            layout = picked
        yield layout, locator, record
