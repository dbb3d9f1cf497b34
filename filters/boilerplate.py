"""The ``strip_boilerplate`` step: QA-site greetings, sign-offs, site names and links out of answers.

A thin step over :mod:`meddata.text`'s one boilerplate engine, which the QA-site builders
(``alpaca_qa``, ``stackexchange``) call while reading: with the same patterns both clean an
answer identically. Patterns: ``meddata/data/boilerplate_qa_sites.yaml`` plus your own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from meddata.filters.clean import TextParams, empty_field
from pydantic import Field, field_validator, model_validator

from meddata.io import file_stamps
from meddata.params import InputPath
from meddata.records import MESSAGE_COLUMNS, map_text
from meddata.registry import register
from meddata.steps import Drop, Mapper, Outcome, StepContext
from meddata.text import DEFAULT_BOILERPLATE, SECTIONS, check_regex, load_patterns, read_pattern_file


class BoilerplateParams(TextParams):
    #: Your own pattern file (same format as the shipped one), added to it.
    patterns: InputPath | None = None
    #: Use the shipped QA-site list (meddata/data/boilerplate_qa_sites.yaml).
    use_default: bool = True
    #: Extra patterns inline, by section: {leading: [...], trailing: [...], site_names: [...]}.
    extra_patterns: dict[str, list[str]] = Field(default_factory=dict)
    #: Roles of message columns to clean: site boilerplate lives in the doctors' answers, and a
    #: patient's "Thank you doctor!" turn should not empty a conversation. null: every role.
    roles: list[Literal["system", "user", "assistant"]] | None = Field(default_factory=lambda: ["assistant"])
    #: Split "healthy.Nothing" and "enzymesHope" so sentences can be recognised.
    fix_glued_sentences: bool = True
    capitalize: bool = True

    @field_validator("extra_patterns")
    @classmethod
    def _valid_patterns(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        allowed = {*SECTIONS, "site_names", "site_domains"}
        for key, values in v.items():
            if key not in allowed:
                raise ValueError(f"unknown section {key!r}; allowed: {sorted(allowed)}")
            for i, pattern in enumerate(values):
                check_regex(pattern, f"{key}[{i}]")
        return v

    @model_validator(mode="after")
    def _some_patterns(self):
        if not self.use_default and not self.patterns and not self.extra_patterns:
            raise ValueError("use_default is false and neither 'patterns' nor 'extra_patterns' is set")
        if self.patterns:
            read_pattern_file(Path(self.patterns))  # fail when the recipe loads, naming the entry
        return self


@register
class StripBoilerplate(Mapper):
    name = "strip_boilerplate"
    description = ("Remove QA-site boilerplate (greetings, sign-offs, site names, links to the site) "
                   "with configurable patterns; rows left empty are dropped.")
    Params = BoilerplateParams
    worker_state = ("_patterns",)

    def setup(self, ctx: StepContext) -> None:
        p: BoilerplateParams = self.params
        files = ([str(DEFAULT_BOILERPLATE)] if p.use_default else []) + ([p.patterns] if p.patterns else [])
        self._patterns = load_patterns(files, p.extra_patterns)

    def fingerprint_extra(self, ctx: StepContext) -> str:
        """Edited pattern files invalidate the checkpoint."""
        p: BoilerplateParams = self.params
        return file_stamps([DEFAULT_BOILERPLATE, *([p.patterns] if p.patterns else [])])

    def _clean(self, text: str) -> str:
        p: BoilerplateParams = self.params
        out, counts = self._patterns.strip(text, deglue=p.fix_glued_sentences, capitalize=p.capitalize)
        for section, n in counts.items():
            self.stat_update(f"boilerplate.{section}", n)
        return out

    def process(self, row: dict, ctx: StepContext) -> Outcome:
        p: BoilerplateParams = self.params
        before = {c: row.get(c) for c in ("text", *MESSAGE_COLUMNS)}
        if p.roles is None:
            map_text(row, self._clean, p.fields)
        else:
            plain = [f for f in (p.fields or ("text", "question", "answer")) if f not in MESSAGE_COLUMNS]
            map_text(row, self._clean, plain)
            for col in MESSAGE_COLUMNS:
                if (p.fields is None or col in p.fields) and row.get(col):
                    row[col] = [
                        {**m, "content": self._clean(m["content"])}
                        if m["role"] in p.roles and m["content"] else m
                        for m in row[col]
                    ]
        if any(row.get(c) != v for c, v in before.items()):
            self.stat_update("boilerplate.rows_changed")
        if empty_field(row) is not None:
            return Drop(row, "empty_after_boilerplate")
        return row
