"""The ``textbook`` and ``textbook_jsonl`` builders and their parameters."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal

from meddata.builders import source_io
from meddata.builders.rows_out import checked_rows
from meddata.builders.textbook.assembly import DEFAULT_DROP_HEADINGS, Assembler, MatterRules
from meddata.builders.textbook.blocks import Block
from meddata.builders.textbook.readers import html_blocks, line_blocks, pdf_blocks
from pydantic import field_validator

from meddata import io
from meddata.records import make_id, new_meta
from meddata.registry import register
from meddata.steps import Builder, Drop, Quarantine, StepContext

_JSON_START = re.compile(r"\s*(\{\s*\"|\[\s*[\[{\"\]])")


class TextbookParams(source_io.SourceParams):
    chunk_size: int = 2000
    chunk_overlap: int = 200
    unit: Literal["chars", "tokens"] = "chars"
    heading_prefix: Literal["none", "title", "path"] = "title"
    #: reason -> regexes matched (whole, case-insensitive) against heading titles.
    drop_headings: dict[str, list[str]] = DEFAULT_DROP_HEADINGS
    phi_status: source_io.PhiStatus = "not_applicable"

    @field_validator("chunk_overlap")
    @classmethod
    def _overlap(cls, v: int, info: Any) -> int:
        size = info.data.get("chunk_size", 2000)
        if v < 0 or v >= size:
            raise ValueError(f"must be at least 0 and smaller than chunk_size ({size})")
        return v

    @field_validator("chunk_size")
    @classmethod
    def _size(cls, v: int) -> int:
        if v < 50:
            raise ValueError("must be at least 50")
        return v

    @field_validator("drop_headings")
    @classmethod
    def _patterns(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        for reason, patterns in v.items():
            if not re.fullmatch(r"[a-z][a-z0-9_]*", reason):
                raise ValueError(f"reason {reason!r} must be snake_case")
            for pat in patterns:
                try:
                    re.compile(pat)
                except re.error as exc:
                    raise ValueError(f"{reason}: {pat!r} is not a valid regular expression ({exc})") from None
        return v


def _starts_like_json(path: Path) -> bool:
    with io.open_binary(path) as fh:
        head = fh.read(64)
    return _JSON_START.match(head.decode("latin-1")) is not None


_FORMATS = {".txt": "text", ".text": "text", ".md": "markdown", ".markdown": "markdown", ".html": "html",
            ".htm": "html", ".xhtml": "html", ".pdf": "pdf"}


class _BookBuilder(Builder):
    """Shared reader: the front/back matter rules for the whole input, then each file in turn."""

    output_columns = ("text",)
    default_patterns: ClassVar[tuple[str, ...]] = ()
    def independent_files(self, ctx: StepContext) -> list[Path]:
        """Each file is chunked on its own (the matter rules only cache verdicts on titles), with
        ids made from the file's name."""
        return source_io.if_names_distinct(source_io.input_files(self.params, self.default_patterns))

    @checked_rows
    def read(self, ctx: StepContext) -> Iterator[dict | Drop | Quarantine]:
        p: TextbookParams = self.params
        source = source_io.source_name(p)
        rules = MatterRules(p.drop_headings)
        for path in source_io.input_files(p, self.default_patterns, ctx.files):
            yield from self.read_file(path, ctx.display_path(path), source, rules)

    def read_file(self, path: Path, display: str, source: str,
                  rules: MatterRules) -> Iterator[dict | Drop | Quarantine]:
        raise NotImplementedError


@register
class Textbook(_BookBuilder):
    name = "textbook"
    description = ("Books and guidelines (.txt, .md, .html, .pdf) -> text chunks on headings with overlap; "
                   "front/back matter and exercises dropped with a reason.")
    Params = TextbookParams
    default_patterns = (tuple(f"*{ext}" for ext in _FORMATS)
                        + tuple(f"*{ext}.gz" for ext in _FORMATS if ext != ".pdf"))

    def read_file(self, path: Path, display: str, source: str,
                  rules: MatterRules) -> Iterator[dict | Drop | Quarantine]:
        p: TextbookParams = self.params
        if (q := source_io.empty_file(path, display)) is not None:
            yield q
            return
        kind = _FORMATS.get(io.base_suffix(path))
        if kind is None:
            yield Quarantine("unknown file type; expected .txt, .md, .html or .pdf", display, "file")
            return
        if kind != "pdf" and _starts_like_json(path):
            yield Quarantine("file holds JSON, not book text (read JSON/JSONL sections with textbook_jsonl)",
                             display, "file")
            return
        if kind == "pdf":
            blocks: Iterator[Block] = pdf_blocks(path, display)
        elif kind == "html":
            blocks = html_blocks(path, display, p.encoding)
        else:
            blocks = line_blocks(io.iter_lines(path, p.encoding), display, markdown=kind == "markdown")
        asm = Assembler(self, rules, source, display)
        quarantined = False
        for block in blocks:
            quarantined = quarantined or isinstance(block, Quarantine)
            yield from asm.feed(block)
        yield from asm.close()
        if asm.outcomes == 0 and not quarantined:
            yield Quarantine("no text found in the document", display, "file")


class TextbookJsonlParams(TextbookParams):
    text_field: str = "text"
    #: Fields that form the top of the heading path, outermost first (OpenStax: unit > chapter > title).
    path_fields: list[str] = ["unit", "chapter", "title"]
    format: Literal["jsonl", "json"] | None = None


@register
class TextbookJsonl(_BookBuilder):
    name = "textbook_jsonl"
    description = ("Book sections as JSONL records (OpenStax layout: unit, chapter, title, markdown text) -> "
                   "text chunks with the heading path; front/back matter and exercises dropped.")
    Params = TextbookJsonlParams
    default_patterns = ("*.jsonl", "*.jsonl.gz", "*.json")

    def read_file(self, path: Path, display: str, source: str,
                  rules: MatterRules) -> Iterator[dict | Drop | Quarantine]:
        p: TextbookJsonlParams = self.params
        for item in source_io.iter_records(path, display, p.format, p.encoding):
            if isinstance(item, Quarantine):
                yield item
                continue
            locator, record = item
            text = record.get(p.text_field)
            if not isinstance(text, str):
                yield Quarantine(f"field '{p.text_field}' is missing or not a string", display, locator)
                continue
            base = [str(record[f]).strip() for f in p.path_fields if record.get(f) not in (None, "")]
            asm = Assembler(self, rules, source, display, base_path=base, locator_prefix=f"{locator} ")
            lines = enumerate(text.split("\n"), start=1)
            for block in line_blocks(lines, display, markdown=True, locator_word="text line"):
                yield from asm.feed(block)
            yield from asm.close()
            if asm.outcomes == 0:  # nothing but whitespace and headings: account for the record
                meta = new_meta(builder=self.name, file=display, locator=locator, licence=p.licence,
                                phi_status=p.phi_status, annotations={"heading_path": base})
                yield Drop({"id": make_id(source, f"{path.name}:{locator}"), "source": source, "meta": meta},
                           "empty_text")
