"""Synthea CSV exports (patients.csv, conditions.csv, medications.csv, ...) -> one record summary per patient.

A CSV export has no notes, so each patient becomes a structured summary written as text, one
section per table (Conditions, Medications, Allergies, Care plans, Procedures, Immunizations,
Observations, Encounters; most recent first), plus the same content as ``facts`` (JSON) in the
shape :mod:`meddata.builders.fhir` uses, anchored at the patient's last encounter. Task makers
turn these into "summarise this record" or "list the active problems" examples.

Names, addresses and identifiers from patients.csv never enter the row: only sex and age.
Dates appear in the text (it is raw PHI until de-identified); ``facts`` holds days before the
anchor instead.

The export's tables are not sorted by patient, so joining them needs an index: records are
streamed into a SQLite file in the step's scratch folder (removed afterwards), which keeps
memory flat however large the export.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from meddata.builders import source_io
from meddata.builders.ehr import age_years, days_between, parse_date
from meddata.builders.fhir import FACTS_FEATURES
from meddata.builders.rows_out import checked_rows

from meddata.records import new_meta, new_row
from meddata.registry import register
from meddata.steps import Builder, Drop, Quarantine, StepContext


@dataclass(frozen=True)
class Table:
    stem: str
    title: str
    start: tuple[str, ...] = ("START", "DATE")
    stop: str | None = "STOP"


TABLES = (
    Table("conditions", "Conditions"),
    Table("medications", "Medications"),
    Table("allergies", "Allergies"),
    Table("careplans", "Care plans"),
    Table("procedures", "Procedures"),
    Table("immunizations", "Immunizations", stop=None),
    Table("observations", "Observations", stop=None),
    Table("encounters", "Encounters"),
)


class SyntheaCsvParams(source_io.SourceParams):
    phi_status: source_io.PhiStatus = "raw"
    #: Items kept per section (most recent first); the rest are counted in facts.omitted.
    max_items: int = 50


def _get(record: Mapping[str, Any], *names: str) -> str:
    for name in names:
        for key in (name, name.lower(), name.capitalize()):
            value = record.get(key)
            if value not in (None, ""):
                return str(value).strip()
    return ""


def _keyed_records(path: Path, display: str, key: str, encoding: str,
                   require_records: bool = True) -> Iterator[tuple[str, str, dict[str, Any]] | Quarantine]:
    """``(value of key, locator, record)`` for the records of a CSV file; a record without the
    key (the patient id that joins the tables) is quarantined."""
    for item in source_io.iter_records(path, display, encoding=encoding, require_records=require_records):
        if isinstance(item, Quarantine):
            yield item
            continue
        locator, record = item
        value = _get(record, key)
        if not value:
            yield Quarantine(f"field '{key}' is missing or empty", display, locator)
            continue
        yield value, locator, record


def _find(root: Path, stem: str) -> Path | None:
    for name in (f"{stem}.csv", f"{stem}.csv.gz"):
        if (root / name).is_file():
            return root / name
    return None


@register
class SyntheaCsv(Builder):
    name = "synthea_csv"
    description = ("Synthea CSV export folder: one row per patient summarising conditions, medications, "
                   "allergies, care plans, encounters... as sections, with 'facts' JSON.")
    Params = SyntheaCsvParams
    output_columns = ("text", "sections", "facts")
    extra_features = FACTS_FEATURES

    @checked_rows
    def read(self, ctx: StepContext) -> Iterator[dict | Drop | Quarantine]:
        p: SyntheaCsvParams = self.params
        root = Path(p.path)
        root = root.parent if root.is_file() else root
        patients = _find(root, "patients")
        if patients is None:
            raise FileNotFoundError(f"{root}: no patients.csv (a Synthea CSV export folder holds patients.csv, "
                                    "conditions.csv, medications.csv, ...)")
        ctx.step_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=ctx.step_dir, prefix="synthea-index-") as tmp:
            con = sqlite3.connect(Path(tmp) / "index.sqlite")
            try:
                yield from self._read(con, root, patients, ctx)
            finally:
                con.close()

    def _read(self, con: sqlite3.Connection, root: Path, patients: Path, ctx: StepContext):
        p: SyntheaCsvParams = self.params
        con.execute("CREATE TABLE rec (tbl TEXT, patient TEXT, day TEXT, line INTEGER, data TEXT)")
        con.execute("CREATE TABLE seen (patient TEXT PRIMARY KEY)")
        for table in TABLES:
            path = _find(root, table.stem)
            if path is not None:
                yield from self._index(con, table, path, ctx.display_path(path))
        con.execute("CREATE INDEX rec_patient ON rec (patient, tbl)")
        source = source_io.source_name(p, "synthea")
        display = ctx.display_path(patients)
        for item in _keyed_records(patients, display, "Id", p.encoding):
            if isinstance(item, Quarantine):
                yield item
                continue
            pid, locator, record = item
            con.execute("INSERT OR IGNORE INTO seen VALUES (?)", (pid,))
            yield self._patient(con, pid, record, source, display, locator)
        for tbl, n in con.execute("SELECT tbl, COUNT(*) FROM rec WHERE patient NOT IN (SELECT patient FROM seen) "
                                  "GROUP BY tbl ORDER BY tbl"):
            self.stat_update(f"synthea.orphan_records.{tbl}", n)
            yield Quarantine(f"{n} record(s) refer to patients missing from patients.csv (field 'PATIENT')",
                             ctx.display_path(_find(root, tbl) or root), "file")

    def _index(self, con: sqlite3.Connection, table: Table, path: Path, display: str) -> Iterator[Quarantine]:
        if (q := source_io.empty_file(path, display)) is not None:
            yield q
            return
        header = source_io.csv_header(path, display, self.params.encoding)
        if isinstance(header, Quarantine):
            yield header
            return
        if "PATIENT" not in {h.strip().upper() for h in header}:
            yield Quarantine("the header lacks the column 'PATIENT'; skipped the table", display, "line 1")
            return
        batch = []
        # a table with only a header is normal (a population without allergies)
        for item in _keyed_records(path, display, "PATIENT", self.params.encoding, require_records=False):
            if isinstance(item, Quarantine):
                yield item
                continue
            patient, locator, record = item
            day = _get(record, *table.start)[:10]
            batch.append((table.stem, patient, day, int(locator.split()[-1]), json.dumps(record)))
            if len(batch) >= 5000:
                con.executemany("INSERT INTO rec VALUES (?, ?, ?, ?, ?)", batch)
                batch.clear()
        con.executemany("INSERT INTO rec VALUES (?, ?, ?, ?, ?)", batch)

    def _patient(self, con: sqlite3.Connection, pid: str, patient: Mapping[str, Any], source: str,
                 display: str, locator: str) -> dict | Drop:
        p: SyntheaCsvParams = self.params
        (last,) = con.execute("SELECT MAX(day) FROM rec WHERE patient = ? AND tbl = 'encounters'", (pid,)).fetchone()
        if last is None:
            (last,) = con.execute("SELECT MAX(day) FROM rec WHERE patient = ?", (pid,)).fetchone()
        anchor = parse_date(last)
        death = parse_date(_get(patient, "DEATHDATE"))
        at = death if death and (anchor is None or death < anchor) else anchor
        gender = {"F": "female", "M": "male"}.get(_get(patient, "GENDER").upper(), _get(patient, "GENDER") or None)
        age = age_years(parse_date(_get(patient, "BIRTHDATE")), at)
        facts: dict[str, Any] = {"anchor": "last_encounter",
                                 "patient": {"gender": gender, "age_years": age, "deceased": death is not None},
                                 "omitted": {}}
        sections = []
        for table in TABLES:
            items = [json.loads(d) for (d,) in con.execute(
                "SELECT data FROM rec WHERE patient = ? AND tbl = ? ORDER BY day DESC, line DESC", (pid, table.stem))]
            if not items:
                continue
            kept = items[: p.max_items]
            if len(items) > len(kept):
                facts["omitted"][table.stem] = len(items) - len(kept)
            facts[table.stem] = [self._fact(table, r, anchor) for r in kept]
            lines = [self._line(table, r) for r in kept]
            if len(items) > len(kept):
                lines.append(f"({len(items) - len(kept)} earlier item(s) not shown)")
            sections.append({"title": table.title, "text": "\n".join(lines)})
        meta = new_meta(builder=self.name, file=display, locator=locator, licence=p.licence,
                        phi_status=p.phi_status, patient_id=pid)
        header = "Patient record summary."
        if gender:
            header += f" Sex: {gender}."
        if age is not None:
            header += f" Age: {age}{'+' if age >= 90 else ''}" + (" at death." if at is death and death else ".")
        if not sections:
            return Drop({"id": f"{source}:{pid}", "source": source, "meta": meta}, "no_records_for_patient")
        self.stat_update("synthea.patients")
        text = header + "\n\n" + "\n\n".join(f"{s['title']}:\n{s['text']}" for s in sections)
        row = new_row(source=source, meta=meta, id=f"{source}:{pid}", text=text, sections=sections)
        row["facts"] = json.dumps(facts, sort_keys=True)
        return row

    @staticmethod
    def _line(table: Table, r: Mapping[str, Any]) -> str:
        start = _get(r, *table.start)[:10]
        stop = _get(r, table.stop)[:10] if table.stop else ""
        when = f"{start} to {stop}" if stop and stop != start else (f"since {start}" if table.stop and not stop else start)
        what = _get(r, "DESCRIPTION") or "(no description)"
        if table.stem == "encounters" and _get(r, "ENCOUNTERCLASS"):
            what = f"{_get(r, 'ENCOUNTERCLASS')}: {what}"
        if table.stem == "observations" and _get(r, "VALUE"):
            what = f"{what}: {_get(r, 'VALUE')} {_get(r, 'UNITS')}".rstrip()
        if table.stem == "allergies" and _get(r, "DESCRIPTION1"):
            what = f"{what} (reaction: {_get(r, 'DESCRIPTION1')})"
        reason = _get(r, "REASONDESCRIPTION")
        return f"- {when}: {what}" + (f" (for {reason})" if reason else "")

    @staticmethod
    def _fact(table: Table, r: Mapping[str, Any], anchor: date | None) -> dict[str, Any]:
        start = parse_date(_get(r, *table.start))
        stop = parse_date(_get(r, table.stop)) if table.stop else None
        fact: dict[str, Any] = {"display": _get(r, "DESCRIPTION") or None, "code": _get(r, "CODE") or None,
                                "start_days_before": days_between(start, anchor),
                                "stop_days_before": days_between(stop, anchor)}
        if table.stop:
            fact["active_at_anchor"] = stop is None or (anchor is not None and stop > anchor)
        for key, col in (("reason", "REASONDESCRIPTION"), ("value", "VALUE"), ("unit", "UNITS"),
                         ("class", "ENCOUNTERCLASS"), ("category", "CATEGORY"), ("reaction", "DESCRIPTION1")):
            if _get(r, col):
                fact[key] = _get(r, col)
        return fact
