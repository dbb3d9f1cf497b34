"""KG triple -> instruction -> dialogue: a templated knowledge-graph QA row (from the ``kg``
builder, ClinicalGPT style) becomes a natural patient question with a grounded answer, and
a multi-turn patient-assistant dialogue built around the same fact.

The ``kg`` builder records the triple's ``head`` and ``relation`` in
``meta.annotations``; when they are there, every generated row must still name the head
entity (``kg_dialogue.rejected.lost_entity`` otherwise), so the fact the row was made from
cannot silently disappear. Any other single-turn instruction row works too (without that
check). ``emit`` chooses which rows to keep: the rewritten instruction, the dialogue, or both.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from meddata.llm import ChatResponse
from meddata.llm.conversation import (
    dialogue_messages,
    dialogue_schema,
    dialogue_traits,
    single_turn,
)
from meddata.llm.generator import LLMGenerator
from meddata.llm.scope import ScopedParams, in_scope
from meddata.records import annotate, annotations, messages
from meddata.registry import register
from meddata.steps import Drop, Outcome


class KgDialogueParams(ScopedParams):
    emit: list[Literal["instruction", "dialogue"]] = Field(default_factory=lambda: ["instruction", "dialogue"],
                                                           min_length=1)
    min_exchanges: int = Field(default=2, ge=1, le=20)
    max_exchanges: int = Field(default=4, ge=1, le=20)
    keep_source: bool = Field(default=False, description="also keep the templated KG row")
    max_tokens: int = Field(default=2048, ge=1)

    @model_validator(mode="after")
    def _range(self) -> KgDialogueParams:
        if self.min_exchanges > self.max_exchanges:
            raise ValueError("min_exchanges must not exceed max_exchanges")
        return self


def names_entity(text: str, entity: str) -> bool:
    """Whether ``text`` mentions ``entity`` (case- and whitespace-insensitive)."""
    return " ".join(entity.split()).casefold() in " ".join(text.split()).casefold()


@register
class KgDialogue(LLMGenerator):
    name = "kg_dialogue"
    description = "LLM: KG-templated QA -> natural instruction and a grounded patient-assistant dialogue."
    Params = KgDialogueParams
    template_file = "kg_dialogue.jinja"
    input_columns = ("messages",)
    output_columns = ("messages",)

    def applies_to(self, row: dict) -> bool:
        return in_scope(self.params, row) and single_turn(row) is not None

    def prepare(self, row: dict) -> dict[str, Any]:
        _, question, answer = single_turn(row)  # type: ignore[misc]
        ann = annotations(row)
        head = ann.get("head") if isinstance(ann.get("head"), str) else None
        relation = ann.get("relation") if isinstance(ann.get("relation"), str) else None
        return {"question": question, "answer": answer, "head": head,
                "relation": relation.replace("_", " ") if relation else None}

    def schema(self, row: dict, variables: dict[str, Any]) -> dict:
        p: KgDialogueParams = self.params
        return dialogue_schema(p.min_exchanges, p.max_exchanges,
                               question={"type": "string", "minLength": 8}, answer={"type": "string", "minLength": 2})

    def build(self, row: dict, responses: list[ChatResponse], variables: dict[str, Any]) -> Outcome:
        p: KgDialogueParams = self.params
        resp = responses[0]
        head = variables["head"]
        source_ann = annotations(row)
        made = []
        question, answer = str(resp.parsed["question"]).strip(), str(resp.parsed["answer"]).strip()
        dialogue = dialogue_messages(resp.parsed["dialogue"][: p.max_exchanges])
        candidates: list[tuple[str, list[dict] | None]] = [
            ("instruction", messages(("user", question), ("assistant", answer)) if question and answer else None),
            ("dialogue", dialogue),
        ]
        for index, (kind, msgs) in enumerate(candidates):
            if kind not in p.emit:
                continue
            if msgs is None:
                self.stat_update(f"kg_dialogue.rejected.empty_{kind}")
                continue
            if head and not names_entity("\n".join(m["content"] for m in msgs), head):
                self.stat_update(f"kg_dialogue.rejected.lost_entity.{kind}")
                continue
            new = self.derived_row(row, index, resp.model, messages=msgs)
            annotate(new, "kg_dialogue.kind", kind)
            if kind == "dialogue":
                annotate(new, "dialogue", dialogue_traits(msgs))
            for key in ("head", "relation"):  # the triple, as the kg builder recorded it
                if key in source_ann:
                    annotate(new, key, source_ann[key])
            made.append(new)
            self.stat_update(f"kg_dialogue.{kind}")
        if not made:
            return [row] if p.keep_source else Drop(self.mark_generated(row, resp.model), "kg_fact_lost")
        return [row, *made] if p.keep_source else made
