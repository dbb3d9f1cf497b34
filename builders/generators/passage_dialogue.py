"""Passage -> multi-turn patient-assistant dialogue, after Clinical Camel's dialogue-based
knowledge encoding (DBKE): the facts of a textbook or guideline passage are taught through a
realistic conversation in which the assistant is empathetic, asks follow-up questions,
admits the limits of what it can tell without an examination, and refers the patient to a
clinician.

A dialogue that cites a source the user never saw ("according to the passage") is
rejected like passage_qa's pairs. What the dialogue does that DBKE asks for (follow-up
questions, a referral) is recorded in ``meta.annotations["dialogue"]`` and counted;
``require_referral: true`` drops dialogues without a referral (``no_referral_to_clinician``).
"""

from __future__ import annotations

from typing import Any

from meddata.builders.generators.passage_qa import refers_to_source
from pydantic import Field, model_validator

from meddata.llm import ChatResponse
from meddata.llm.conversation import dialogue_messages, dialogue_schema, dialogue_traits
from meddata.llm.generator import LLMGenerator
from meddata.llm.scope import ScopedParams, in_scope
from meddata.records import annotate, detect_type
from meddata.registry import register
from meddata.steps import Drop, Outcome


class PassageDialogueParams(ScopedParams):
    min_exchanges: int = Field(default=3, ge=1, le=20, description="fewest patient-assistant exchanges")
    max_exchanges: int = Field(default=6, ge=1, le=20, description="most patient-assistant exchanges")
    min_chars: int = Field(default=200, ge=1, description="shorter passages are dropped (too_short_for_dialogue)")
    max_chars: int = Field(default=12000, ge=100, description="longer passages are dropped (passage_too_long)")
    require_referral: bool = Field(default=False, description="drop dialogues that never refer to a clinician")
    system_prompt: str | None = Field(default=None, description="system turn to put at the start of each dialogue")
    keep_source: bool = False
    max_tokens: int = Field(default=2048, ge=1)

    @model_validator(mode="after")
    def _range(self) -> PassageDialogueParams:
        if self.min_exchanges > self.max_exchanges:
            raise ValueError("min_exchanges must not exceed max_exchanges")
        return self


@register
class PassageDialogue(LLMGenerator):
    name = "passage_dialogue"
    description = "LLM: passage -> empathetic multi-turn patient-assistant dialogue (Clinical Camel's DBKE)."
    Params = PassageDialogueParams
    template_file = "passage_dialogue.jinja"
    input_columns = ("text",)
    output_columns = ("messages",)

    def applies_to(self, row: dict) -> bool:
        return in_scope(self.params, row) and detect_type(row) == "language_modeling"

    def prepare(self, row: dict) -> dict[str, Any] | Drop:
        p: PassageDialogueParams = self.params
        passage = (row.get("text") or "").strip()
        if len(passage) < p.min_chars:
            return Drop(row, "too_short_for_dialogue")
        if len(passage) > p.max_chars:
            return Drop(row, "passage_too_long")
        sections = row.get("sections") or []
        title = sections[0].get("title") if sections and isinstance(sections[0], dict) else None
        return {"passage": passage, "title": title, "min_exchanges": p.min_exchanges, "max_exchanges": p.max_exchanges}

    def schema(self, row: dict, variables: dict[str, Any]) -> dict:
        return dialogue_schema(variables["min_exchanges"], variables["max_exchanges"])

    def build(self, row: dict, responses: list[ChatResponse], variables: dict[str, Any]) -> Outcome:
        p: PassageDialogueParams = self.params
        resp = responses[0]
        msgs = dialogue_messages(resp.parsed["dialogue"][: p.max_exchanges], p.system_prompt)
        if msgs is None:
            return self.quarantine(row, resp, "a dialogue turn is empty")
        if any(refers_to_source(m["content"]) for m in msgs if m["role"] != "system"):
            self.stat_update("passage_dialogue.rejected.refers_to_passage")
            return Drop(self.mark_generated(row, resp.model), "dialogue_refers_to_passage")
        traits = dialogue_traits(msgs)
        self.stat_update("passage_dialogue.exchanges", traits["exchanges"])
        self.stat_update("passage_dialogue.with_followup_question", int(traits["followup_questions"] > 0))
        self.stat_update("passage_dialogue.with_referral", int(traits["refers_to_clinician"]))
        if p.require_referral and not traits["refers_to_clinician"]:
            return Drop(self.mark_generated(row, resp.model), "no_referral_to_clinician")
        new = annotate(self.derived_row(row, 0, resp.model, messages=msgs), "dialogue", traits)
        return [row, new] if p.keep_source else new
