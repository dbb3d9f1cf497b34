"""Passage -> QA pairs (HuatuoGPT-II style): a textbook or guideline chunk becomes several
single-turn conversations whose answers are grounded in the passage.

The prompt forbids meta-references ("according to the passage"); answers that still make
one lose a leading "According to the text," and any pair that keeps referring to a passage
is rejected, since a model trained on it would cite a text the user never saw.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field

from meddata.llm import ChatResponse
from meddata.llm.generator import GeneratorParams, LLMGenerator
from meddata.records import detect_type, messages
from meddata.registry import register
from meddata.steps import Drop, Outcome

_DOC = r"(?:passage|text|article|excerpt|paragraph|section|document|context|reading|material)"
_LEADING = re.compile(
    rf"^\s*(?:according to|based on|as (?:stated|described|mentioned|noted|explained) in|from|per) "
    rf"(?:the|this|that|above|given) (?:above |given |provided )?{_DOC}\s*,?\s*", re.I)
_VERBS = (r"(?:says?|said|states?|stated|mentions?|describes?|explains?|notes?|suggests?|indicates?|"
          r"discuss(?:es)?|highlights?|emphasi[sz]es?|does not|doesn't)")
_REFERS = re.compile(
    rf"\b(?:according to|based on|as (?:stated|described|mentioned|noted|explained) in) "
    rf"(?:the|this|that) (?:above |given |provided )?{_DOC}\b"
    # "in the context of" is medical prose; "in the passage" is not
    rf"|\b(?:in|from) (?:the|this|that) (?:above |given |provided )?(?:passage|excerpt|article)\b"
    rf"|\b(?:the|this|that) (?:above |given |provided )?{_DOC} (?:also )?{_VERBS}"
    rf"|\b(?:do|does|did) (?:the|this) (?:passage|excerpt|article|text)\b", re.I)


class PassageQAParams(GeneratorParams):
    per_passage: int = Field(default=3, ge=1, le=20, description="QA pairs to ask for per passage")
    min_chars: int = Field(default=200, ge=1, description="shorter passages are dropped (too_short_for_qa)")
    max_chars: int = Field(default=12000, ge=100, description="longer passages are dropped (passage_too_long)")
    keep_source: bool = Field(default=False, description="also keep the passage row itself")


def strip_reference(text: str) -> str:
    """Remove a leading 'According to the passage,' and restore the capital letter."""
    out = _LEADING.sub("", text.strip(), count=1)
    return out[:1].upper() + out[1:] if out != text.strip() else out


def refers_to_source(text: str) -> bool:
    return bool(_REFERS.search(text))


@register
class PassageQA(LLMGenerator):
    name = "passage_qa"
    description = "LLM: turn a textbook/guideline passage (text) into grounded question-answer conversations."
    Params = PassageQAParams
    template_file = "passage_qa.jinja"
    input_columns = ("text",)
    output_columns = ("messages",)

    def applies_to(self, row: dict) -> bool:
        """Plain-text rows (passages, chunks); rows that already are conversations or exam
        items are not passages."""
        return detect_type(row) == "language_modeling"

    def prepare(self, row: dict) -> dict[str, Any] | Drop:
        p: PassageQAParams = self.params
        passage = (row.get("text") or "").strip()
        if len(passage) < p.min_chars:
            return Drop(row, "too_short_for_qa")
        if len(passage) > p.max_chars:
            return Drop(row, "passage_too_long")
        sections = row.get("sections") or []
        title = sections[0].get("title") if sections and isinstance(sections[0], dict) else None
        return {"passage": passage, "n": p.per_passage, "title": title}

    def schema(self, row: dict, variables: dict[str, Any]) -> dict:
        pair = {
            "type": "object",
            "properties": {"question": {"type": "string", "minLength": 8}, "answer": {"type": "string", "minLength": 2}},
            "required": ["question", "answer"],
        }
        return {
            "type": "object",
            "properties": {"pairs": {"type": "array", "items": pair, "minItems": 1, "maxItems": variables["n"]}},
            "required": ["pairs"],
        }

    def build(self, row: dict, responses: list[ChatResponse], variables: dict[str, Any]) -> Outcome:
        p: PassageQAParams = self.params
        resp = responses[0]
        rows, seen = [], set()
        for pair in resp.parsed["pairs"][: p.per_passage]:
            q, a = strip_reference(pair["question"]), strip_reference(pair["answer"])
            if refers_to_source(q) or refers_to_source(a):
                self.stat_update("passage_qa.pairs_rejected.refers_to_passage")
                continue
            if not q or not a or q.lower() in seen:
                self.stat_update("passage_qa.pairs_rejected.empty_or_repeated")
                continue
            seen.add(q.lower())
            rows.append(self.derived_row(row, len(rows), resp.model,
                                         messages=messages(("user", q), ("assistant", a))))
        self.stat_update("passage_qa.pairs", len(rows))
        if not rows:
            return Drop(row, "no_usable_qa_pairs")
        return [row, *rows] if p.keep_source else rows
