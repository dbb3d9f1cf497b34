"""Knowledge-graph triples -> templated QA (ClinicalGPT-style KG instructions).

Triples ``(head, relation, tail)`` come from CSV/TSV/JSONL (``layout: triples``) or from a
wide table with one head column and list-valued columns per relation (``layout:
disease_table``, e.g. ChatDoctor's ``format_dataset.csv``: disease -> Symptom,
TestsAndProcedures, commonMedications). Every tail of the same head and relation is
aggregated into one answer; the question is a paraphrase from ``data/kg_templates.yaml``
chosen deterministically per (head, relation, seed).

Grouping choice: triples of one file are grouped through an on-disk SQLite table in the
step's scratch folder, so input order does not matter (no sorting needed) and memory stays
flat however large the graph; groups come out in order of their first triple. Groups never
span files. Counting: each output row (one per group and paraphrase) and each quarantined
triple is one record read; ``kg.triples`` in the step's counters says how many triples fed
the groups, ``kg.duplicate_tails`` how many repeated a tail already in their group.
"""

from __future__ import annotations

import ast
import json
import random
import re
import sqlite3
import uuid
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from meddata.builders import source_io
from meddata.builders.rows_out import checked_rows
from pydantic import BaseModel, ConfigDict, Field

from meddata import io
from meddata.params import InputPath
from meddata.records import make_id, messages, new_meta, new_row
from meddata.registry import register
from meddata.steps import Builder, Drop, Quarantine, StepContext
from meddata.yamlfile import read_yaml

TEMPLATES_FILE = Path(__file__).parent / "data" / "kg_templates.yaml"
MAX_LIST_CHARS = 100_000
CHATDOCTOR_RELATIONS = {"Symptom": "symptom", "TestsAndProcedures": "test", "commonMedications": "medication"}


def norm_relation(name: str) -> str:
    return re.sub(r"[\s\-/]+", "_", name.strip().lower())


def norm_entity(name: str) -> str:
    return " ".join(name.split()).casefold()


class RelationTemplates(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = ""  # the relation's canonical name (its key in the file)
    aliases: list[str] = Field(default_factory=list)
    questions: list[str] = Field(min_length=1)
    answers: list[str] = Field(min_length=1)


@lru_cache(maxsize=8)
def load_templates(path: str | Path = TEMPLATES_FILE) -> dict[str, RelationTemplates]:
    """relation alias (normalised) -> templates. Errors name the file and relation."""
    raw = read_yaml(path, ValueError, "template")
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping of relation -> {{aliases, questions, answers}}")
    by_alias: dict[str, RelationTemplates] = {}
    for rel, spec in raw.items():
        try:
            tpl = RelationTemplates.model_validate({**(spec or {}), "name": norm_relation(str(rel))})
        except Exception as exc:  # pydantic ValidationError: report relation, not a traceback
            raise ValueError(f"{path}: relation {rel!r}: {exc}") from None
        for text in (*tpl.questions, *tpl.answers):
            names = set(re.findall(r"{(\w*)}", text))
            if names - {"head", "tails", "n"}:
                raise ValueError(f"{path}: relation {rel!r}: template uses unknown placeholder(s) "
                                 f"{sorted(names - {'head', 'tails', 'n'})}; allowed: head, tails, n")
        for alias in {rel, *tpl.aliases}:
            by_alias[norm_relation(str(alias))] = tpl
    return by_alias


def join_list(items: list[str]) -> str:
    """``["a", "b", "c"]`` -> ``"a, b and c"``."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def soften(term: str) -> str:
    """Lower-case a leading capital unless the word looks like an acronym or a name part
    (``Sharp chest pain`` -> ``sharp chest pain``; ``MRI``, ``HbA1c`` stay)."""
    word = term.split(" ", 1)[0]
    if len(word) > 1 and word[0].isupper() and word[1:].islower() and word.isalpha():
        return term[0].lower() + term[1:]
    return term


class TripleColumns(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    head: str = "head"
    relation: str = "relation"
    tail: str = "tail"


class KgParams(source_io.SourceParams):
    layout: Literal["triples", "disease_table"] = "triples"
    format: Literal["csv", "tsv", "jsonl"] | None = None  # default: from the suffix
    #: ``triples``: where head, relation and tail live (column names or JSON keys).
    columns: TripleColumns = TripleColumns()
    #: ``disease_table``: the head column and the list-valued columns -> relation names.
    head_column: str = "disease"
    relation_columns: dict[str, str] = Field(default_factory=lambda: dict(CHATDOCTOR_RELATIONS))
    templates: InputPath | None = None  # default: the shipped data/kg_templates.yaml
    #: Rows per (head, relation) group, each with a different question paraphrase.
    questions_per_group: int = Field(1, ge=1, le=10)
    #: Keep at most this many tails in an answer (0 = all); the rest are counted, not shown.
    max_tails: int = Field(25, ge=0)
    #: Relations without a template: drop the group, or ask "What is the <relation> of X?".
    unknown_relation: Literal["drop", "generic"] = "drop"
    lowercase_tails: bool = True
    max_entity_chars: int = Field(300, ge=10)
    seed: int = 0


_SCHEMA = """
CREATE TABLE t (seq INTEGER PRIMARY KEY, hkey TEXT, rel TEXT, head TEXT, tail TEXT, tkey TEXT, line INTEGER);
CREATE INDEX t_group ON t(hkey, rel, seq);
"""


@register
class KgBuilder(Builder):
    name = "kg"
    description = "Knowledge-graph triples (CSV/TSV/JSONL or a disease table) -> templated QA messages."
    Params = KgParams
    output_columns = ("messages",)

    @checked_rows
    def read(self, ctx: StepContext) -> Iterator[dict | Drop | Quarantine]:
        p: KgParams = self.params
        templates = load_templates(p.templates or TEMPLATES_FILE)
        for path in source_io.input_files(p, ("*",)):
            file = ctx.display_path(path)
            if (q := source_io.empty_file(path, file)) is not None:
                yield q
                continue
            try:
                records = self._records(path)
            except ValueError as exc:
                yield Quarantine(str(exc).removeprefix(f"{path}: "), file, "file")
                continue
            ctx.step_dir.mkdir(parents=True, exist_ok=True)
            db_path = ctx.step_dir / f"kg-{uuid.uuid4().hex}.sqlite"
            db = sqlite3.connect(db_path)
            try:
                db.executescript(_SCHEMA)
                yield from self._load(db, records, file, templates)
                yield from self._groups(db, templates, source_io.file_source(p, path), file)
            finally:
                db.close()
                db_path.unlink(missing_ok=True)

    # -- reading -------------------------------------------------------------------------
    def _records(self, path: Path) -> Iterator:
        p: KgParams = self.params
        fmt = p.format or io.base_suffix(path).lstrip(".")
        if fmt not in ("csv", "tsv", "jsonl"):
            raise ValueError(f"{path}: unknown triple file type {fmt!r}; use csv, tsv or jsonl (set 'format:')")
        if fmt == "jsonl":
            return io.iter_jsonl(path, p.encoding)
        return io.iter_csv(path, p.encoding, delimiter="\t" if fmt == "tsv" else ",")

    def _triples(self, rec: dict[str, Any]) -> list[tuple[str, str, str]]:
        """One record -> triples; raises ValueError naming the field."""
        p: KgParams = self.params
        if p.layout == "triples":
            c = p.columns
            values = []
            for role, col in (("head", c.head), ("relation", c.relation), ("tail", c.tail)):
                v = rec.get(col)
                if v is None or not str(v).strip():
                    raise ValueError(f"field '{col}' ({role}) is missing or empty")
                values.append(str(v).strip())
            return [(values[0], values[1], values[2])]
        head = str(rec.get(p.head_column) or "").strip()
        if not head:
            raise ValueError(f"field '{p.head_column}' (head) is missing or empty")
        out = []
        for col, rel in p.relation_columns.items():
            if col not in rec:
                raise ValueError(f"field '{col}' is missing")
            out.extend((head, rel, tail) for tail in _cell_list(rec[col], col))
        return out

    def _load(self, db: sqlite3.Connection, records: Iterator, file: str, templates: dict) -> Iterator[Quarantine]:
        """Store triples keyed by (normalised head, canonical relation): aliases of one relation
        ("treated by", "medications") fall into one group."""
        p: KgParams = self.params
        batch: list[tuple] = []
        for item in records:
            if isinstance(item, Quarantine):
                yield Quarantine(item.error, file, item.locator)
                continue
            locator, rec = item
            try:
                triples = self._triples(rec)
                for h, _rel, t in triples:
                    for role, v in (("head", h), ("tail", t)):
                        if len(v) > p.max_entity_chars:
                            raise ValueError(f"{role} is longer than {p.max_entity_chars} characters "
                                             "(not an entity name; raise max_entity_chars if it is)")
            except ValueError as exc:
                yield Quarantine(str(exc), file, locator)
                continue
            line = int(locator.split()[-1])
            for h, r, t in triples:
                rel = norm_relation(r)
                rel = templates[rel].name if rel in templates else rel
                batch.append((norm_entity(h), rel, h, t, norm_entity(t), line))
            if len(batch) >= 5000:
                self._flush(db, batch)
        self._flush(db, batch)

    def _flush(self, db: sqlite3.Connection, batch: list[tuple]) -> None:
        db.executemany("INSERT INTO t (hkey, rel, head, tail, tkey, line) VALUES (?,?,?,?,?,?)", batch)
        db.commit()
        self.stat_update("kg.triples", len(batch))
        batch.clear()

    # -- grouping ------------------------------------------------------------------------
    def _groups(self, db: sqlite3.Connection, templates: dict, source: str, file: str) -> Iterator[dict | Drop]:
        groups = db.execute("SELECT hkey, rel FROM t GROUP BY hkey, rel ORDER BY MIN(seq)")
        for hkey, rel in groups:
            rows = db.execute("SELECT head, tail, tkey, line FROM t WHERE hkey = ? AND rel = ? ORDER BY seq",
                              (hkey, rel)).fetchall()
            head = rows[0][0]
            tails, seen, lines = [], set(), []
            for _, tail, tkey, line in rows:
                if line not in lines[-1:]:
                    lines.append(line)
                if tkey in seen:
                    self.stat_update("kg.duplicate_tails")
                    continue
                seen.add(tkey)
                tails.append(tail)
            yield from self._qa(head, hkey, rel, tails, lines, templates, source, file)

    def _qa(self, head: str, hkey: str, rel: str, tails: list[str], lines: list[int], templates: dict,
            source: str, file: str) -> Iterator[dict | Drop]:
        p: KgParams = self.params
        locator = f"line {lines[0]}" + (f" (+{len(lines) - 1} more)" if len(lines) > 1 else "")
        shown = tails[: p.max_tails] if p.max_tails else tails
        meta = new_meta(builder=self.name, file=file, locator=locator, licence=p.licence,
                        annotations={"head": head, "relation": rel, "n_tails": len(tails),
                                     "tails_shown": len(shown), "lines": lines[:50]})
        tpl = templates.get(rel)
        if tpl is None and p.unknown_relation == "drop":
            yield Drop({"id": make_id(source, f"{file}:{hkey}\x1f{rel}"), "source": source, "meta": meta},
                       "no_template")
            return
        if tpl is None:
            label = rel.replace("_", " ")
            questions, answers = [f"What is the {label} of {{head}}?"], [f"The {label} of {{head}}: {{tails}}."]
        else:
            questions, answers = tpl.questions, tpl.answers
        rng = random.Random(f"{p.seed}\x1f{hkey}\x1f{rel}")
        picked = rng.sample(range(len(questions)), min(p.questions_per_group, len(questions)))
        tail_text = join_list([soften(t) for t in shown] if p.lowercase_tails else shown)
        if len(shown) < len(tails):
            tail_text += f" (and {len(tails) - len(shown)} more)"
        for k in picked:
            answer = rng.choice(answers).format(head=head, tails=tail_text, n=len(tails))
            answer = answer[0].upper() + answer[1:]
            row_meta = {**meta, "annotations": json.dumps({**json.loads(meta["annotations"]), "template": k},
                                                          sort_keys=True)}
            yield new_row(source=source, meta=row_meta, id=make_id(source, f"{file}:{hkey}\x1f{rel}\x1f{k}"),
                          messages=messages(("user", questions[k].format(head=head, tails=tail_text, n=len(tails))),
                                            ("assistant", answer)))


def _cell_list(value: Any, col: str) -> list[str]:
    """A list-valued cell: a JSON list, a Python list literal (ChatDoctor writes
    ``"['Cough', 'Fever']"``), or one plain value. Empty cells give no tails."""
    if isinstance(value, list):
        items = value
    else:
        text = str(value or "").strip()
        if not text:
            return []
        if text.startswith("["):
            if len(text) > MAX_LIST_CHARS:
                raise ValueError(f"field '{col}' is a list over {MAX_LIST_CHARS:,} characters")
            try:
                items = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                raise ValueError(f"field '{col}' looks like a list but is not a valid list literal") from None
            if not isinstance(items, list):
                raise ValueError(f"field '{col}' must be a list")
        else:
            items = [text]
    return [str(i).strip() for i in items if str(i).strip()]
