"""Pipeline steps: ``deid`` (de-identify text) and ``phi_scan`` (re-check generated text).

Both record counts by PHI type in ``meta.annotations`` and as ``phi.<TYPE>`` counters
(summed into stats.json and shown in the build funnel). Neither ever writes a detected
value anywhere: only types, counts and the strategy.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Literal

from pydantic import field_validator

from meddata.params import require_known
from meddata.records import CONTENT_COLUMNS, annotate, map_text
from meddata.registry import register
from meddata.steps import Drop, Mapper, StepContext, StepParams

logger = logging.getLogger("meddata.deid")

CONTENT_FIELDS = CONTENT_COLUMNS  # every column that can hold note text


class DeidParams(StepParams):
    strategy: Literal["surrogate", "mask", "redact"] = "surrogate"
    #: Environment variable holding the secret key for surrogates (consistent across runs).
    key_env: str = "MEDDATA_DEID_KEY"
    #: safe_harbor (what the HIPAA rule requires; keeps ages up to 89, weekdays, states) or recall
    #: (also every age, weekday, state and country, as i2b2-style gold marks them).
    policy: Literal["recall", "safe_harbor"] = "safe_harbor"
    #: auto: use spaCy NER when installed; on: require it; off: rules and dictionaries only.
    model: Literal["auto", "on", "off"] = "auto"
    #: meddata's learned PHI tagger merged with the rules: off (default), auto (use when shipped), on.
    learned: Literal["auto", "on", "off"] = "off"
    #: Shift dates by whole weeks so weekdays stay true.
    keep_weekday: bool = False
    #: Content fields to de-identify (default: all of them).
    fields: tuple[str, ...] = CONTENT_FIELDS
    #: Replace meta.patient_id / encounter_id (often MRNs) with keyed pseudonyms; the same id
    #: always gets the same pseudonym under one key, so patient-level splits still work.
    pseudonymize_ids: bool = True
    #: raw: only rows whose meta.phi_status is raw (public text such as textbooks is left
    #: alone); all: every row, e.g. for a source whose phi_status was not set correctly.
    rows: Literal["raw", "all"] = "raw"

    @field_validator("fields")
    @classmethod
    def _fields(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        require_known(v, CONTENT_FIELDS, "field")
        return v


def pseudonym(key: bytes, kind: str, value: str) -> str:
    """A keyed, irreversible stand-in for an identifier (``patient_id`` -> ``pid-3f9c...``)."""
    import hashlib
    import hmac

    digest = hmac.new(key, f"{kind}\x1f{value}".encode(), hashlib.sha256).hexdigest()[:16]
    return f"{kind.split('_')[0][:3]}-{digest}"


def _collect(row: dict, fields: tuple[str, ...]) -> list[str]:
    """Every content string of a row, in the order ``map_text`` visits them."""
    found: list[str] = []

    def grab(s: str) -> str:
        found.append(s)
        return s

    map_text(row, grab, fields)
    return found


class _DetectingStep(Mapper):
    """Shared setup: one detector per worker process (the spaCy model is not pickled)."""

    batch_size = 128
    worker_state = ("_detector",)

    def requirements(self) -> tuple[str, ...]:
        """spaCy only when the recipe insists on the NER model; ``auto`` falls back to rules."""
        return ("spacy",) if "on" in (self.params.model, self.params.learned) else ()

    def setup(self, ctx: StepContext) -> None:
        from meddata.filters.deid.detector import Detector, config_for

        self._detector = Detector(config_for(self.params.policy, model=self.params.model, learned=self.params.learned))

    def _detect_rows(self, rows: list[dict], fields: tuple[str, ...]) -> list[tuple[list[str], list]]:
        """Each row's texts with the spans found in each text (one detector batch for all rows)."""
        texts_per_row = [_collect(r, fields) for r in rows]
        spans = iter(self._detector.detect_many([t for texts in texts_per_row for t in texts]))
        return [(texts, [next(spans) for _ in texts]) for texts in texts_per_row]


@register
class Deid(_DetectingStep):
    name = "deid"
    description = "De-identify clinical text (HIPAA Safe Harbor): mask, redact or surrogate names, dates, places, ids."
    Params = DeidParams
    input_columns = CONTENT_FIELDS
    output_columns = CONTENT_FIELDS
    worker_state = ("_detector", "_key")  # the surrogate key never leaves the process

    def setup(self, ctx: StepContext) -> None:
        from meddata.filters.deid.surrogate import key_from_env

        super().setup(ctx)
        self._key, persistent = key_from_env(self.params.key_env)
        if self.params.strategy == "surrogate" and not persistent:
            logger.warning("%s is not set: surrogates are consistent within this run only (set it to a secret "
                           "to keep them stable across runs)", self.params.key_env)

    def process_batch(self, rows: list[dict], ctx: StepContext) -> list:
        from meddata.filters.deid.replace import replace_spans
        from meddata.filters.deid.surrogate import Surrogates

        p: DeidParams = self.params
        out: list = list(rows)
        todo = [i for i, r in enumerate(rows) if p.rows == "all" or (r.get("meta") or {}).get("phi_status") == "raw"]
        self.stat_update("deid.skipped_not_raw", len(rows) - len(todo))
        for i, (texts, row_spans) in zip(todo, self._detect_rows([rows[i] for i in todo], p.fields)):
            row = rows[i]
            scope = str((row.get("meta") or {}).get("patient_id") or row.get("id") or "")
            sur = Surrogates(self._key, scope, keep_weekday=p.keep_weekday) if p.strategy == "surrogate" else None
            if sur is not None:
                # never reuse a real value from anywhere in this record
                sur.forbid(t[s.start:s.end] for t, ss in zip(texts, row_spans) for s in ss)
            replaced = iter([replace_spans(t, ss, p.strategy, sur) for t, ss in zip(texts, row_spans)])
            map_text(row, lambda _old, it=replaced: next(it), p.fields)
            counts = Counter(s.type for ss in row_spans for s in ss)
            for typ, n in counts.items():
                self.stat_update(f"phi.{typ}", n)
            self.stat_update("deid.records")
            if p.pseudonymize_ids:
                meta = row["meta"]
                for key in ("patient_id", "encounter_id"):
                    if meta.get(key):
                        meta[key] = pseudonym(self._key, key, str(meta[key]))
            annotate(row, "deid", {"strategy": p.strategy, "policy": p.policy,
                                   "phi": dict(sorted(counts.items())), "total": sum(counts.values())})
            row["meta"]["phi_status"] = "deidentified"
            out[i] = row
        return out


def _placeholder(text: str, span) -> bool:
    """``[NAME]`` left by an earlier mask step is not PHI."""
    return text[span.start - 1:span.start] == "[" and text[span.end:span.end + 1] == "]"


class PhiScanParams(StepParams):
    #: flag: annotate and keep; drop: remove rows with PHI-like spans (reason phi_detected).
    action: Literal["flag", "drop"] = "flag"
    #: Count only these types (default: every type).
    types: tuple[str, ...] = ()
    #: Rows with at least this many PHI-like spans are acted on.
    min_spans: int = 1
    policy: Literal["recall", "safe_harbor"] = "safe_harbor"
    model: Literal["auto", "on", "off"] = "auto"
    #: meddata's learned PHI tagger merged with the rules: off (default), auto (use when shipped), on.
    learned: Literal["auto", "on", "off"] = "off"
    fields: tuple[str, ...] = ("messages", "prompt", "completion", "chosen", "rejected", "text", "answer")

    @field_validator("types")
    @classmethod
    def _types(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        from meddata.filters.deid.spans import PHI_TYPES

        require_known(v, PHI_TYPES, "PHI type")
        return v


@register
class PhiScan(_DetectingStep):
    name = "phi_scan"
    description = "Flag or drop rows whose (generated) text holds PHI-like spans, e.g. after LLM augmentation."
    Params = PhiScanParams
    input_columns = ("messages", "prompt", "completion", "chosen", "rejected", "text", "answer")

    def process_batch(self, rows: list[dict], ctx: StepContext) -> list:
        p: PhiScanParams = self.params
        out = []
        for row, (texts, text_spans) in zip(rows, self._detect_rows(rows, p.fields)):
            row_spans = [s for t, ss in zip(texts, text_spans) for s in ss
                         if (not p.types or s.type in p.types) and not _placeholder(t, s)]
            counts = Counter(s.type for s in row_spans)
            n = sum(counts.values())
            self.stat_update("phi_scan.rows")
            if n >= p.min_spans:
                self.stat_update("phi_scan.flagged")
                for typ, c in counts.items():
                    self.stat_update(f"phi.{typ}", c)
            annotate(row, "phi_scan", {"phi": dict(sorted(counts.items())), "total": n,
                                       "flagged": n >= p.min_spans})
            if n >= p.min_spans and p.action == "drop":
                out.append(Drop(row, "phi_detected"))
            else:
                out.append(row)
        return out
