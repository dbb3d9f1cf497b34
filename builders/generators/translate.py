"""Translate instruction rows into another language, the way multilingual medical models
(MMedLM, Apollo) built their sets, keeping medical terms, units and numbers intact.

Every turn is translated (system, user and assistant; the row keeps its TRL type) and then
checked against its source turn: each number (decimal commas and points, thousands
separators aside), each unit written after a number (mg, mL, mmol/L, mmHg, %, degC...)
and, with ``check_acronyms``, each acronym (HbA1c, ECG, COPD) must still be there. A
translation that lost or changed one is quarantined with the turn and what went missing,
counted, never quoted (numbers in a clinical row can be identifiers).

By default the translation replaces the row. With ``keep_source: true`` the original is
kept too; a failed translation then leaves the original alone, with the reason in
``meta.annotations["translate.error"]`` and the count in ``translate.failed.<check>``.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from pydantic import Field

from meddata.llm import ChatResponse
from meddata.llm.conversation import turns_of
from meddata.llm.generator import LLMGenerator
from meddata.llm.scope import ScopedParams, in_scope
from meddata.records import annotate, detect_type
from meddata.registry import register
from meddata.steps import Outcome

_NUMBER = re.compile(r"(?<![\w.,])\d+(?:[.,]\d+)*")
_UNITS = (r"mmol/L|µmol/L|umol/L|mEq/L|mg/dL|g/dL|g/L|ng/mL|pg/mL|mcg/kg|mg/kg|mL/min|mL/h|U/L|IU/L|mmHg|"
          r"kg/m2|kg/m\^2|kg/m²|bpm|mcg|µg|ug|mg|kg|mL|ml|dL|cm|mm|IU|mEq|°C|°F|degC|degF|C|F|L|g|%")
_UNIT = re.compile(rf"(?<![\w.,])\d+(?:[.,]\d+)*\s?({_UNITS})(?![\w/])")
_ACRONYM = re.compile(r"\b(?=[A-Za-z0-9]*[A-Z][A-Za-z0-9]*[A-Z0-9])[A-Z][A-Za-z0-9]*[A-Z0-9][A-Za-z0-9]*\b")


def numbers(text: str) -> Counter:
    """Numbers in ``text``, separators removed (``1,000.5`` and ``1.000,5`` count the same)."""
    return Counter(re.sub(r"[.,]", "", m) for m in _NUMBER.findall(text))


def units(text: str) -> Counter:
    """Units written right after a number (``20 mg``, ``38.5 °C``, ``7%``), normalised."""
    out: Counter = Counter()
    for u in _UNIT.findall(text):
        u = u.replace("°", "").removeprefix("deg").replace("µ", "u").replace("²", "2").replace("^2", "2")
        out[u.replace("ml", "mL")] += 1
    return out


def acronyms(text: str) -> Counter:
    """Tokens with two or more capitals or a capital and a digit: ECG, COPD, HbA1c, SpO2."""
    return Counter(_ACRONYM.findall(text))


def lost_in_translation(source: str, translation: str, *, check_acronyms: bool = True) -> dict[str, int]:
    """How many numbers, units and acronyms of ``source`` are missing from ``translation``
    (only kinds with something missing): ``{"numbers": 2, "units": 1}``."""
    checks = {"numbers": numbers, "units": units, **({"acronyms": acronyms} if check_acronyms else {})}
    lost = {kind: sum((extract(source) - extract(translation)).values()) for kind, extract in checks.items()}
    return {kind: n for kind, n in lost.items() if n}


class TranslateParams(ScopedParams):
    language: str = Field(min_length=2, description="target language, as the model should read it: 'Spanish', 'French'")
    language_code: str | None = Field(default=None, description="code recorded in annotations (es, fr); default: language")
    check_acronyms: bool = Field(default=True, description="acronyms (ECG, HbA1c) must survive as written")
    keep_source: bool = Field(default=False, description="keep the original row next to its translation")
    max_tokens: int = Field(default=4096, ge=1)


@register
class Translate(LLMGenerator):
    name = "translate"
    description = "LLM: translate instruction rows, keeping medical terms, units and numbers (checked) intact."
    Params = TranslateParams
    template_file = "translate.jinja"
    input_columns = ("messages", "prompt", "completion")
    output_columns = ("messages", "prompt", "completion")

    def applies_to(self, row: dict) -> bool:
        return in_scope(self.params, row) and turns_of(row) is not None

    def prepare(self, row: dict) -> dict[str, Any]:
        turns = turns_of(row) or []
        return {"turns": turns, "language": self.params.language}

    def schema(self, row: dict, variables: dict[str, Any]) -> dict:
        n = len(variables["turns"])
        return {"type": "object", "required": ["translations"], "properties": {"translations": {
            "type": "array", "items": {"type": "string", "minLength": 1}, "minItems": n, "maxItems": n}}}

    def build(self, row: dict, responses: list[ChatResponse], variables: dict[str, Any]) -> Outcome:
        p: TranslateParams = self.params
        resp = responses[0]
        turns = variables["turns"]
        translated = [str(t).strip() for t in resp.parsed["translations"]]
        failures, kinds = [], set()
        for i, (turn, text) in enumerate(zip(turns, translated)):
            lost = {"empty": 1} if not text else lost_in_translation(turn["content"], text,
                                                                      check_acronyms=p.check_acronyms)
            if lost:
                kinds.update(lost)
                what = "is empty" if "empty" in lost else "lost " + ", ".join(f"{n} {k}" for k, n in lost.items())
                failures.append(f"turn {i} ({turn['role']}) {what}")
        if failures:
            for kind in sorted(kinds):
                self.stat_update(f"translate.failed.{kind}")
            reason = "translation changed the source: " + "; ".join(failures)
            if p.keep_source:
                return annotate(row, "translate.error", reason)
            return self.quarantine(row, resp, reason)
        new = self.derived_row(row, 0, resp.model, **self._content(row, translated))
        annotate(new, "translate.language", p.language_code or p.language)
        self.stat_update("translate.rows")
        return [row, new] if p.keep_source else new

    @staticmethod
    def _content(row: dict, translated: list[str]) -> dict[str, list[dict]]:
        """The translated turns in the row's own columns (messages, or prompt + completion)."""
        it = iter(translated)
        cols = ("messages",) if detect_type(row) == "conversational" else ("prompt", "completion")
        return {col: [{"role": m["role"], "content": next(it)} for m in row[col]] for col in cols}
