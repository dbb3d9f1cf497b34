"""Streaming readers for record files with file:line error reporting.

Every reader yields ``(locator, record)`` pairs or :class:`~meddata.steps.Quarantine` items,
never loads a whole file, and turns decoding problems into messages that say what to do.
Gzip is detected from the ``.gz`` suffix.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

from meddata.outcomes import Quarantine

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
    """A JSON file holding an array of objects (or an object of objects keyed by id, whose key
    becomes ``_key``), streamed item by item. Locators: ``item N`` / ``key K``."""
    fname = str(path)
    if (q := binary_file(path, encoding)) is not None:
        yield q
        return
    for item in iter_json_values(path, encoding, top_object="keyed"):
        if isinstance(item, Quarantine):
            yield item
            continue
        loc = f"item {item.index}" if item.key is None else f"key {item.key}"
        obj = item.value
        if item.key is not None and isinstance(obj, dict):
            obj = {"_key": item.key, **obj}
        yield (loc, obj) if isinstance(obj, dict) else Quarantine(
            f"expected a JSON object, got {type(obj).__name__}", fname, loc)


@dataclass(frozen=True)
class JsonItem:
    """One value of a JSON array (or of a keyed object) and where it starts."""

    index: int
    line: int
    value: Any
    key: str | None = None


#: Characters decoded per read while streaming a JSON file.
_JSON_CHUNK = 1 << 20


class _TextStream:
    """A decoded text buffer over a binary file, refilled on demand, tracking line numbers."""

    def __init__(self, fh: IO[bytes], encoding: str):
        self._fh = fh
        self._decoder = codecs.getincrementaldecoder(encoding)()
        self.buf = ""
        self.pos = 0
        self.line = 1  # line number at self.pos
        self.eof = False

    def fill(self) -> None:
        raw = self._fh.read(_JSON_CHUNK)
        if not raw:
            self.eof = True
            self.buf += self._decoder.decode(b"", final=True)
            return
        if self.pos > _JSON_CHUNK:  # drop what was consumed
            self.buf, self.pos = self.buf[self.pos:], 0
        self.buf += self._decoder.decode(raw)

    def skip_ws(self) -> str:
        """Advance past whitespace; return the next character ('' at end of file)."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in " \t\r\n\ufeff":
                self.line += self.buf[self.pos] == "\n"
                self.pos += 1
            if self.pos < len(self.buf) or self.eof:
                return self.buf[self.pos] if self.pos < len(self.buf) else ""
            self.fill()

    def advance(self, end: int) -> None:
        self.line += self.buf.count("\n", self.pos, end)
        self.pos = end


class _JsonBreak(Exception):
    """The file stops being readable JSON here; the message and line say where and why."""

    def __init__(self, message: str, line: int):
        super().__init__(message)
        self.line = line


def iter_json_values(path: Path, encoding: str = "utf-8", *, display: str | None = None,
                     top_object: Literal["record", "keyed"] = "record",
                     max_item_chars: int = MAX_LINE_BYTES) -> Iterator[JsonItem | Quarantine]:
    """The values of a top-level JSON array, decoded one at a time: memory holds one item
    plus a read buffer, however large the file (HealthCareMagic-100k is a 140 MB array).

    A top-level object is one record (``top_object="record"``) or a mapping of id -> record
    (``"keyed"``, PubMedQA's ``ori_pqal.json``). An empty file, a syntax error, a truncated
    file or an item over ``max_item_chars`` ends the file with one quarantine entry naming
    the line; the items before it were already yielded.
    """
    display = display or str(path)
    with open_binary(path) as fh:
        s = _TextStream(fh, encoding)
        try:
            yield from _json_values(s, top_object, max_item_chars)
        except _JsonBreak as exc:
            yield Quarantine(str(exc), display, f"line {exc.line}")
        except UnicodeDecodeError as exc:
            yield Quarantine(f"not valid {encoding} near byte {exc.start} of a read block; {ENCODING_HINT}",
                             display, f"line {s.line}")


def _json_values(s: _TextStream, top_object: str, max_item_chars: int) -> Iterator[JsonItem]:
    decoder = json.JSONDecoder()
    first = s.skip_ws()
    if first == "":
        raise _JsonBreak("the file is empty (expected a JSON array)", s.line)
    if first not in ("[", "{"):
        raise _JsonBreak("expected a JSON array of objects (or one object)", s.line)
    if first == "{" and top_object == "record":
        yield JsonItem(0, s.line, _decode(s, decoder, 0, max_item_chars))
        if s.skip_ws():
            raise _JsonBreak("unexpected content after the JSON object", s.line)
        return
    keyed, close = first == "{", "}" if first == "{" else "]"
    s.advance(s.pos + 1)
    index = 0
    while True:
        c = s.skip_ws()
        if c == close:
            s.advance(s.pos + 1)
            if s.skip_ws():
                raise _JsonBreak(f"unexpected content after the closing '{close}' (all {index} item(s) were read)",
                                 s.line)
            return
        if index:
            if c != ",":
                what = "the file ends" if c == "" else f"expected ',' or '{close}'"
                raise _JsonBreak(f"invalid or truncated JSON after item {index - 1} ({what}); the {index} "
                                 "item(s) before it were read, the rest of the file was not", s.line)
            s.advance(s.pos + 1)
            c = s.skip_ws()
        if c == "":
            raise _JsonBreak(f"invalid or truncated JSON in item {index} (the file ends); the {index} item(s) "
                             "before it were read, the rest of the file was not", s.line)
        key = None
        if keyed:
            key = _decode(s, decoder, index, max_item_chars)
            if not isinstance(key, str) or s.skip_ws() != ":":
                raise _JsonBreak(f"expected \"key\": value in item {index}", s.line)
            s.advance(s.pos + 1)
            s.skip_ws()
        line = s.line
        yield JsonItem(index, line, _decode(s, decoder, index, max_item_chars), key)
        index += 1


def _decode(s: _TextStream, decoder: json.JSONDecoder, index: int, max_item_chars: int) -> Any:
    """The JSON value at the read position, reading more of the file until it is complete."""
    start_line = s.line
    while True:
        try:
            obj, end = decoder.raw_decode(s.buf, s.pos)
        except json.JSONDecodeError as exc:
            if s.eof:
                line = s.line + s.buf.count("\n", s.pos, exc.pos)
                raise _JsonBreak(f"invalid or truncated JSON in item {index} ({exc.msg}); the {index} item(s) "
                                 "before it were read, the rest of the file was not", line) from None
            if len(s.buf) - s.pos > max_item_chars:
                raise _JsonBreak(f"item {index} is over the {max_item_chars:,}-character limit; the rest of "
                                 "the file was not read", start_line) from None
            s.fill()
            continue
        if end - s.pos > max_item_chars:
            raise _JsonBreak(f"item {index} is over the {max_item_chars:,}-character limit; the rest of "
                             "the file was not read", start_line)
        s.advance(end)
        return obj


def file_stamps(paths) -> str:
    """Size and modification time of files (every file under a folder), for step
    fingerprints: an edited input or pattern file invalidates the checkpoint."""
    stamps = []
    for root in map(Path, paths):
        if not root.exists():
            stamps.append(f"{root}:missing")
            continue
        for f in sorted(root.rglob("*")) if root.is_dir() else [root]:
            if f.is_file():
                st = f.stat()
                stamps.append(f"{f}:{st.st_size}:{st.st_mtime_ns}")
    return "|".join(stamps)


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
