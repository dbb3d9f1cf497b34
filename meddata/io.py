"""Streaming readers for record files with file:line error reporting.

Every reader yields ``(locator, record)`` pairs or :class:`~meddata.steps.Quarantine` items,
never loads a whole file, and turns decoding problems into messages that say what to do.
Gzip is detected from the ``.gz`` suffix.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from meddata.steps import Quarantine

#: Lines longer than this are quarantined rather than parsed (a 10 MB line is junk, not data).
MAX_LINE_BYTES = 8 * 1024 * 1024
_BAD_BYTES = re.compile("[\udc80-\udcff]")
ENCODING_HINT = "re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8) or set encoding: latin-1"


def open_binary(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")


#: Bytes looked at to tell a binary file from text.
SNIFF_BYTES = 8192
_MAGIC = ((b"%PDF", "a PDF"), (b"PK\x03\x04", "a ZIP archive (xlsx/docx are ZIP files)"),
          (b"\x1f\x8b", "gzip-compressed (name it *.gz)"), (b"PAR1", "a Parquet file (set format: parquet)"),
          (b"SQLite format 3", "an SQLite database"))


def binary_file(path: Path, encoding: str = "utf-8") -> Quarantine | None:
    """One quarantine entry for a file that is not text at all (a PDF, ZIP, gzip, Parquet or
    SQLite signature, or NUL bytes in its first block), instead of one "not valid utf-8" entry
    per line. UTF-16/32 text is told apart by its BOM."""
    if encoding.lower().replace("-", "").startswith(("utf16", "utf32")):
        return None
    try:
        with open_binary(path) as fh:
            head = fh.read(SNIFF_BYTES)
    except (OSError, EOFError):
        return None  # the reader itself reports a file it cannot open or decompress
    magic = next((name for magic, name in _MAGIC if head.startswith(magic)), None)
    if magic is None and b"\x00" not in head:
        return None
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        what = "UTF-16 text (set encoding: utf-16)"
    else:
        what = magic or "a binary file, not text"
    return Quarantine(f"the file is {what}; nothing was read from it", str(path), "file")


def base_suffix(path: Path) -> str:
    """``notes.csv.gz`` -> ``.csv``."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def iter_lines(path: Path, encoding: str = "utf-8") -> Iterator[tuple[int, str] | Quarantine]:
    """(line number, decoded line without newline); bad bytes become quarantine entries."""
    fname = str(path)
    try:
        fh = open_binary(path)
    except OSError as exc:
        raise FileNotFoundError(f"{fname}: cannot open ({exc.strerror})") from None
    if (q := binary_file(path, encoding)) is not None:
        fh.close()
        yield q
        return
    with fh:
        for n, raw in enumerate(fh, start=1):
            if len(raw) > MAX_LINE_BYTES:
                yield Quarantine(f"line is {len(raw):,} bytes, over the {MAX_LINE_BYTES:,}-byte limit", fname, f"line {n}")
                continue
            try:
                yield n, raw.decode(encoding).rstrip("\r\n")
            except UnicodeDecodeError as exc:
                yield Quarantine(f"not valid {encoding} at byte {exc.start}; {ENCODING_HINT}", fname, f"line {n}")


def iter_jsonl(path: Path, encoding: str = "utf-8") -> Iterator[tuple[str, dict[str, Any]] | Quarantine]:
    """JSON Lines: one object per line; blank lines are skipped (they hold no record)."""
    fname = str(path)
    for item in iter_lines(path, encoding):
        if isinstance(item, Quarantine):
            yield item
            continue
        n, line = item
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            yield Quarantine(f"invalid JSON at column {exc.colno}: {exc.msg}", fname, f"line {n}")
            continue
        if not isinstance(obj, dict):
            yield Quarantine(f"expected a JSON object, got {type(obj).__name__}", fname, f"line {n}")
            continue
        yield f"line {n}", obj


def iter_json_array(path: Path, encoding: str = "utf-8") -> Iterator[tuple[str, dict[str, Any]] | Quarantine]:
    """A JSON file holding an array of objects (or an object of objects keyed by id).
    These formats cannot be streamed line by line; the file is parsed once."""
    fname = str(path)
    if (q := binary_file(path, encoding)) is not None:
        yield q
        return
    try:
        with open_binary(path) as fh:
            text = fh.read().decode(encoding)
        data = json.loads(text)
    except UnicodeDecodeError as exc:
        yield Quarantine(f"not valid {encoding} at byte {exc.start}; {ENCODING_HINT}", fname, "file")
        return
    except json.JSONDecodeError as exc:
        if text.lstrip("\ufeff \t\r\n").startswith("["):  # keep the items before the break
            yield from _array_until_error(text, fname)
            return
        yield Quarantine(f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}", fname, f"line {exc.lineno}")
        return
    if isinstance(data, dict):
        items = [(f"key {k}", {"_key": k, **v} if isinstance(v, dict) else v) for k, v in data.items()]
    elif isinstance(data, list):
        items = [(f"item {i}", v) for i, v in enumerate(data)]
    else:
        yield Quarantine(f"expected a JSON array or object, got {type(data).__name__}", fname, "file")
        return
    for loc, obj in items:
        if isinstance(obj, dict):
            yield loc, obj
        else:
            yield Quarantine(f"expected a JSON object, got {type(obj).__name__}", fname, loc)


def _array_until_error(text: str, fname: str) -> Iterator[tuple[str, dict[str, Any]] | Quarantine]:
    """The items of a JSON array that does not parse as a whole (truncated, or broken part
    way): every complete item before the break, then one quarantine entry for the rest."""
    decoder = json.JSONDecoder()
    pos = text.index("[") + 1
    index = 0
    ws = re.compile(r"[ \t\r\n]*")
    while True:
        pos = ws.match(text, pos).end()
        if text.startswith("]", pos):  # the array closed: the error is in what follows it
            line = text.count("\n", 0, ws.match(text, pos + 1).end()) + 1
            yield Quarantine(f"unexpected content after the closing ']' (all {index} item(s) were read)",
                             fname, f"line {line}")
            return
        try:
            obj, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            line = text.count("\n", 0, exc.pos) + 1
            yield Quarantine(f"invalid or truncated JSON in item {index} ({exc.msg}); the {index} item(s) before "
                             "it were read, the rest of the file was not", fname, f"line {line}")
            return
        loc = f"item {index}"
        yield (loc, obj) if isinstance(obj, dict) else Quarantine(
            f"expected a JSON object, got {type(obj).__name__}", fname, loc)
        index += 1
        pos = ws.match(text, pos).end()
        if text.startswith(",", pos):
            pos += 1
        elif not text.startswith("]", pos):
            line = text.count("\n", 0, pos) + 1
            what = "the file ends" if pos >= len(text) else "expected ',' or ']'"
            yield Quarantine(f"invalid or truncated JSON after item {index - 1} ({what}); the {index} item(s) "
                             "before it were read, the rest of the file was not", fname, f"line {line}")
            return


def iter_csv(
    path: Path, encoding: str = "utf-8", delimiter: str | None = None, header: bool = True,
    fieldnames: list[str] | None = None,
) -> Iterator[tuple[str, dict[str, Any]] | Quarantine]:
    """CSV/TSV rows as dicts; the locator is the line where the record starts."""
    fname = str(path)
    if (q := binary_file(path, encoding)) is not None:
        yield q
        return
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    delimiter = delimiter or ("\t" if base_suffix(path) in (".tsv", ".tab") else ",")
    with open_binary(path) as raw:
        # surrogateescape keeps undecodable bytes as lone surrogates, so one bad record is
        # quarantined and the rest of the file is still read (and counted).
        text = io.TextIOWrapper(raw, encoding=encoding, errors="surrogateescape", newline="")
        reader = csv.reader(text, delimiter=delimiter)
        names = fieldnames
        start = 1
        while True:
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield Quarantine(f"malformed CSV: {exc}", fname, f"line {reader.line_num}")
                start = reader.line_num + 1
                continue
            loc, start = f"line {start}", reader.line_num + 1
            if any(_BAD_BYTES.search(v) for v in values):
                yield Quarantine(f"not valid {encoding}; {ENCODING_HINT}", fname, loc)
                continue
            if names is None and header:
                names = [v.strip() for v in values]
                continue
            if names is None:
                names = [str(i) for i in range(len(values))]
            if not any(v.strip() for v in values):
                continue
            if len(values) != len(names):
                yield Quarantine(f"expected {len(names)} columns, found {len(values)}", fname, loc)
                continue
            yield loc, dict(zip(names, values))


def iter_parquet(path: Path, batch_size: int = 1024) -> Iterator[tuple[str, dict[str, Any]] | Quarantine]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        yield Quarantine(f"not a readable Parquet file ({type(exc).__name__})", str(path), "file")
        return
    n = 0
    for batch in pf.iter_batches(batch_size=batch_size):
        for row in batch.to_pylist():
            yield f"row {n}", row
            n += 1


def iter_records(path: Path, fmt: str | None = None, encoding: str = "utf-8", **csv_kwargs) -> Iterator:
    """Dispatch on ``fmt`` or the file suffix: jsonl, json, csv, tsv, parquet."""
    fmt = (fmt or base_suffix(path).lstrip(".")).lower()
    if fmt in ("jsonl", "ndjson"):
        return iter_jsonl(path, encoding)
    if fmt == "json":
        return iter_json_array(path, encoding)
    if fmt in ("csv", "tsv"):
        return iter_csv(path, encoding, **csv_kwargs)
    if fmt == "parquet":
        return iter_parquet(path)
    raise ValueError(f"{path}: unknown format {fmt!r}; use jsonl, json, csv, tsv or parquet (set 'format:')")


def files_under(path: Path, patterns: tuple[str, ...]) -> list[Path]:
    """A file, or the files under a folder matching any glob pattern, sorted."""
    if path.is_file():
        return [path]
    found = sorted({p for pat in patterns for p in path.rglob(pat) if p.is_file()})
    if not found:
        raise FileNotFoundError(f"{path}: no files matching {', '.join(patterns)}")
    return found
