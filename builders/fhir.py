"""FHIR R4 bundles (one JSON file per patient, as Synthea writes them) -> clinical notes + facts.

Each DocumentReference with an inline (base64) text attachment becomes one note row, with
``meta.patient_id`` / ``meta.encounter_id`` from its subject and context, and ``sections``
split from the decoded text. The patient's structured record is attached to each note as the
``facts`` column (a JSON object string), so task makers can ask "list the active problems"
or "which medications were ordered at this visit" and check answers against it:

.. code-block:: json

    {"anchor": "note", "patient": {"gender": "male", "age_years": 71},
     "encounter": {"type": "...", "class": "AMB", "reasons": ["..."]},
     "conditions":   [{"display", "code", "system", "active_at_note", "onset_days_before",
                       "abated_days_before", "this_encounter"}],
     "medications":  [{"display", "code", "status", "authored_days_before", "reasons", "this_encounter"}],
     "observations": [{"display", "code", "category", "value", "unit", "components",
                       "days_before", "this_encounter"}]}

``facts`` never holds identifiers or calendar dates: times are days before the note and ages
are capped at 90, because de-identification steps rewrite text columns, not this one.
``facts_scope`` picks what is attached: ``encounter`` (conditions active on the note's date,
medications active or ordered at the visit, the visit's observations), ``history`` (everything
recorded up to the note's date) or ``none``. A medication's ``status`` is the record's status
when the bundle was exported; ``encounter`` scope keeps earlier orders only if still active.

A bundle is parsed one file at a time (bundles are single JSON documents).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterator, Mapping
from datetime import date
from pathlib import Path
from typing import Any, Literal

from datasets import Value
from meddata.builders import source_io
from meddata.builders.ehr import age_years, days_between, looks_binary, note_row, parse_date
from meddata.builders.rows_out import checked_rows

from meddata.registry import register
from meddata.steps import Builder, Drop, Quarantine, StepContext

FACTS_FEATURES = {"facts": Value("string")}
_TAGS = re.compile(r"<[^>]{0,500}>")


class FhirParams(source_io.SourceParams):
    phi_status: source_io.PhiStatus = "raw"
    facts_scope: Literal["encounter", "history", "none"] = "encounter"
    #: Bundles larger than this are quarantined unread (Synthea bundles are a few MB).
    max_bytes: int = source_io.MAX_DOCUMENT_BYTES
    section_style: Literal["auto", "lines", "mtsamples"] = "auto"


def ref_id(ref: Any) -> str | None:
    """``{"reference": "urn:uuid:abc"}`` / ``"Encounter/abc"`` -> ``"abc"``."""
    if isinstance(ref, Mapping):
        ref = ref.get("reference")
    if not isinstance(ref, str) or not ref:
        return None
    if ref.startswith("urn:uuid:"):
        return ref[len("urn:uuid:"):]
    return ref.rsplit("/", 1)[-1] if "/" in ref and "?" not in ref else ref


def concept(cc: Any) -> tuple[str | None, str | None, str | None]:
    """(display, code, system) of a CodeableConcept. The terminology's display wins over the
    concept's free ``text``, which a clinician may have typed (and could hold PHI)."""
    if not isinstance(cc, Mapping):
        return None, None, None
    codings = [c for c in cc.get("coding") or [] if isinstance(c, Mapping)]
    first = codings[0] if codings else {}
    display = first.get("display") or cc.get("text")
    system = first.get("system")
    if isinstance(system, str):
        system = system.rstrip("/").rsplit("/", 1)[-1]
    return display, first.get("code"), system


def _value(obs: Mapping[str, Any]) -> tuple[Any, str | None]:
    """A coded or numeric value. ``valueString`` is left out: free text can hold PHI, and
    ``facts`` is not a column de-identification rewrites."""
    if isinstance(obs.get("valueQuantity"), Mapping):
        q = obs["valueQuantity"]
        return q.get("value"), q.get("unit") or q.get("code")
    if "valueCodeableConcept" in obs:
        return concept(obs["valueCodeableConcept"])[0], None
    for key in ("valueBoolean", "valueInteger", "valueDecimal"):
        if key in obs:
            return obs[key], None
    return None, None


class BundleIndex:
    """The resources of one bundle that notes need, grouped by type."""

    def __init__(self, entries: list[Any]):
        self.patient: Mapping[str, Any] | None = None
        self.encounters: dict[str, Mapping[str, Any]] = {}
        self.conditions: list[Mapping[str, Any]] = []
        self.medications: list[Mapping[str, Any]] = []
        self.observations: list[Mapping[str, Any]] = []
        self.documents: list[tuple[int, Mapping[str, Any]]] = []
        self.skipped = 0
        for i, entry in enumerate(entries):
            res = entry.get("resource") if isinstance(entry, Mapping) else None
            if not isinstance(res, Mapping):
                self.skipped += 1
                continue
            kind = res.get("resourceType")
            if kind == "Patient" and self.patient is None:
                self.patient = res
            elif kind == "Encounter" and res.get("id"):
                self.encounters[str(res["id"])] = res
            elif kind == "Condition":
                self.conditions.append(res)
            elif kind == "MedicationRequest":
                self.medications.append(res)
            elif kind == "Observation":
                self.observations.append(res)
            elif kind == "DocumentReference":
                self.documents.append((i, res))

    def facts(self, scope: str, anchor: date | None, encounter_id: str | None) -> dict[str, Any]:
        """The patient's record around one note, with no identifiers and no calendar dates."""
        history = scope == "history"

        def before(d: date | None) -> bool:
            return anchor is None or d is None or d <= anchor

        patient = self.patient or {}
        deceased = patient.get("deceasedDateTime") or patient.get("deceasedBoolean")
        facts: dict[str, Any] = {
            "anchor": "note",
            "patient": {"gender": patient.get("gender"),
                        "age_years": age_years(parse_date(patient.get("birthDate")), anchor),
                        "deceased": bool(deceased) and before(parse_date(deceased))},
        }
        enc = self.encounters.get(encounter_id or "")
        if enc is not None:
            types = [concept(t)[0] for t in enc.get("type") or []]
            cls = enc.get("class")
            facts["encounter"] = {
                "type": next((t for t in types if t), None),
                "class": cls.get("code") if isinstance(cls, Mapping) else None,
                "reasons": [r for r in (concept(c)[0] for c in enc.get("reasonCode") or []) if r],
            }
        conditions = []
        for c in self.conditions:
            onset = parse_date(c.get("onsetDateTime") or c.get("recordedDate"))
            abated = parse_date(c.get("abatementDateTime"))
            here = ref_id(c.get("encounter")) == encounter_id
            if not before(onset):
                continue
            if not history and not here and abated is not None and anchor is not None and abated < anchor:
                continue  # resolved before the note: not an active problem
            display, code, system = concept(c.get("code"))
            resolved = abated is not None and (anchor is None or abated <= anchor)
            conditions.append({"display": display, "code": code, "system": system,
                               "active_at_note": not resolved,
                               "onset_days_before": days_between(onset, anchor),
                               "abated_days_before": days_between(abated, anchor) if resolved else None,
                               "this_encounter": here})
        facts["conditions"] = conditions
        meds = []
        for m in self.medications:
            authored = parse_date(m.get("authoredOn"))
            here = ref_id(m.get("encounter")) == encounter_id
            if not before(authored):
                continue
            if not history and not here and m.get("status") != "active":
                continue
            display, code, _ = concept(m.get("medicationCodeableConcept"))
            if display is None and isinstance(m.get("medicationReference"), Mapping):
                display = m["medicationReference"].get("display")
            meds.append({"display": display, "code": code, "status": m.get("status"),
                         "authored_days_before": days_between(authored, anchor),
                         "reasons": [r for r in (concept(c)[0] for c in m.get("reasonCode") or []) if r],
                         "this_encounter": here})
        facts["medications"] = meds
        observations = []
        for o in self.observations:
            when = parse_date(o.get("effectiveDateTime") or o.get("issued"))
            here = ref_id(o.get("encounter")) == encounter_id
            if not (here or (history and before(when))):
                continue
            display, code, _ = concept(o.get("code"))
            value, unit = _value(o)
            components = []
            for comp in o.get("component") or []:
                if isinstance(comp, Mapping):
                    cv, cu = _value(comp)
                    components.append({"display": concept(comp.get("code"))[0], "value": cv, "unit": cu})
            categories = [concept(c)[1] for c in o.get("category") or []]
            observations.append({"display": display, "code": code, "category": next((c for c in categories if c), None),
                                 "value": value, "unit": unit, "components": components or None,
                                 "days_before": days_between(when, anchor), "this_encounter": here})
        facts["observations"] = observations
        return facts


def decode_attachment(att: Any) -> tuple[str | None, str | None]:
    """(text, None) or (None, why not) for a FHIR Attachment with inline data."""
    if not isinstance(att, Mapping):
        return None, "attachment is not an object"
    ctype = str(att.get("contentType") or "text/plain").lower()
    if "data" not in att:
        return None, "attachment has no inline 'data' (a 'url' is not fetched)" if att.get("url") else \
            "attachment has no 'data'"
    if not ctype.startswith("text/"):
        return None, "attachment contentType is not text/* (only text notes are read)"
    try:
        raw = base64.b64decode(str(att["data"]), validate=True)
    except (binascii.Error, ValueError):
        return None, "attachment 'data' is not valid base64"
    charset = re.search(r"charset=([\w-]+)", ctype)
    try:
        text = raw.decode(charset.group(1) if charset else "utf-8")
    except (UnicodeDecodeError, LookupError):
        return None, "attachment 'data' does not decode with its charset"
    if "html" in ctype:
        text = _TAGS.sub(" ", text)
    return text, None


@register
class FhirBundles(Builder):
    name = "fhir_bundles"
    description = ("FHIR R4 bundles (one JSON per patient, Synthea style): DocumentReference notes decoded, "
                   "with the patient's conditions, medications, observations and encounter as 'facts'.")
    Params = FhirParams
    output_columns = ("text", "sections", "facts")
    extra_features = FACTS_FEATURES
    default_source = "fhir"
    patterns = ("*.json", "*.json.gz")
    def independent_files(self, ctx: StepContext) -> list[Path]:
        """One bundle per file, and ids made from the bundle file's name."""
        return source_io.if_names_distinct(source_io.input_files(self.params, self.patterns))

    @checked_rows
    def read(self, ctx: StepContext) -> Iterator[dict | Drop | Quarantine]:
        p: FhirParams = self.params
        source = source_io.source_name(p, self.default_source)
        for path in source_io.input_files(p, self.patterns, ctx.files):
            display = ctx.display_path(path)
            bundle = source_io.load_json_document(path, display, p.encoding, p.max_bytes)
            if isinstance(bundle, Quarantine):
                yield bundle
                continue
            if not isinstance(bundle, Mapping) or bundle.get("resourceType") != "Bundle":
                yield Quarantine("field 'resourceType' must be 'Bundle' (one bundle per file)", display, "file")
                continue
            entries = bundle.get("entry")
            if not isinstance(entries, list):
                yield Quarantine("field 'entry' must be a list of bundle entries", display, "file")
                continue
            yield from self._bundle(BundleIndex(entries), source, display)

    def _bundle(self, index: BundleIndex, source: str, display: str) -> Iterator[dict | Drop | Quarantine]:
        p: FhirParams = self.params
        if index.skipped:
            self.stat_update("fhir.entries_without_resource", index.skipped)
        patient_id = (index.patient or {}).get("id")
        if not index.documents:
            empty = note_row(self.name, source=source, file=display, locator="Bundle", text=None,
                             phi_status=p.phi_status, licence=p.licence, patient_id=patient_id)
            assert isinstance(empty, Drop)  # no text -> always a Drop
            yield Drop(empty.row, "no_document_reference")
            return
        for i, doc in index.documents:
            locator = f"Bundle/entry[{i}]"
            contents = doc.get("content")
            if not isinstance(contents, list) or not contents:
                yield Quarantine("DocumentReference field 'content' must be a non-empty list", display, locator)
                continue
            text, why = None, None
            for n, content in enumerate(contents):
                att = content.get("attachment") if isinstance(content, Mapping) else None
                text, why = decode_attachment(att)
                if text is not None:
                    break
                why = f"DocumentReference field 'content[{n}].attachment': {why}"
            if text is None:
                yield Quarantine(why or "no readable attachment", display, locator)
                continue
            if looks_binary(text):
                yield Quarantine("DocumentReference attachment decodes to binary content", display, locator)
                continue
            context = doc.get("context") if isinstance(doc.get("context"), Mapping) else {}
            encounters = context.get("encounter") or []
            encounter_id = ref_id(encounters[0]) if isinstance(encounters, list) and encounters else None
            period = context.get("period") if isinstance(context.get("period"), Mapping) else {}
            anchor = parse_date(doc.get("date")) or parse_date(period.get("start"))
            note_type = concept(doc.get("type"))[0]
            row = note_row(self.name, source=source, file=display, locator=locator, text=text,
                           phi_status=p.phi_status, licence=p.licence,
                           patient_id=ref_id(doc.get("subject")) or patient_id, encounter_id=encounter_id,
                           annotations={"category": note_type}, section_style=p.section_style)
            if isinstance(row, dict):
                if p.facts_scope != "none":
                    row["facts"] = json.dumps(index.facts(p.facts_scope, anchor, encounter_id), sort_keys=True)
                self.stat_update("fhir.notes")
            yield row
