"""Evol-instruct (WizardLM's in-depth evolving) for medical instructions: rewrite an
instruction to be harder in one of three ways, and answer the new instruction.

* ``deepen`` – ask for more depth: mechanisms, reasoning steps, trade-offs;
* ``constraints`` – add one or two concrete requirements (a comorbidity, a population, an
  output format, a word limit);
* ``concretize`` – replace general concepts with a specific clinical scenario.

Each input row is evolved ``per_row`` times with methods taken in turn from ``methods``
(the start rotates with the row id, so a dataset gets an even mix). WizardLM's elimination
rules reject an evolution that did not change the instruction (ROUGE-L >= ``max_similarity``
against the original), that leaks the rewriting instructions ("#Rewritten Prompt#", "the
given prompt"), or whose answer is a short apology or empty. Rejections are counted in
``evol_instruct.rejected.<rule>``; the original row is kept unless ``keep_source: false``.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Literal

from meddata.builders.generators.novelty import NoveltyPool
from pydantic import Field

from meddata.llm import ChatRequest, ChatResponse
from meddata.llm.conversation import single_turn
from meddata.llm.generator import LLMGenerator
from meddata.llm.scope import ScopedParams, in_scope
from meddata.records import annotate, messages
from meddata.registry import register
from meddata.steps import Drop, Outcome

Method = Literal["deepen", "constraints", "concretize"]
_LEAK = re.compile(r"#\s*(?:given|rewritten|created)\s*prompt\s*#|\b(?:given|rewritten|original) (?:prompt|instruction)\b"
                   r"|\brewritten version\b", re.I)
_APOLOGY = re.compile(r"\b(?:sorry|as an AI)\b", re.I)
SHORT_APOLOGY_WORDS = 80


class EvolInstructParams(ScopedParams):
    methods: list[Method] = Field(default_factory=lambda: ["deepen", "constraints", "concretize"], min_length=1)
    per_row: int = Field(default=1, ge=1, le=3, description="evolutions per row, each with a different method")
    max_similarity: float = Field(default=0.9, gt=0, le=1,
                                  description="an evolution this similar (ROUGE-L) to the original is rejected")
    keep_source: bool = Field(default=True, description="keep the original instruction row as well")
    max_tokens: int = Field(default=2048, ge=1)


def elimination_reason(original: str, evolved: str, answer: str, max_similarity: float) -> str | None:
    """WizardLM's elimination rules, as a rejection label (None: keep the evolution)."""
    if not evolved or not answer:
        return "empty"
    if _LEAK.search(evolved):
        return "leaked_prompt_words"
    if _APOLOGY.search(answer) and len(answer.split()) < SHORT_APOLOGY_WORDS:
        return "refusal"
    if not re.search(r"[A-Za-z0-9]", answer):
        return "empty"
    pool = NoveltyPool(max_similarity)
    pool.add(original)
    novel, _ = pool.add_if_novel(evolved)
    return None if novel else "no_change"


@register
class EvolInstruct(LLMGenerator):
    name = "evol_instruct"
    description = "LLM: evolve instructions (deepen, add constraints, concretize) and answer them (WizardLM)."
    Params = EvolInstructParams
    template_file = "evol_instruct.jinja"
    input_columns = ("messages",)
    output_columns = ("messages",)

    def applies_to(self, row: dict) -> bool:
        return in_scope(self.params, row) and single_turn(row) is not None

    def prepare(self, row: dict) -> dict[str, Any]:
        p: EvolInstructParams = self.params
        system, user, assistant = single_turn(row)  # type: ignore[misc]
        start = int(hashlib.sha1(f"{p.seed}\x1f{row['id']}".encode()).hexdigest(), 16) % len(p.methods)
        picked = [p.methods[(start + i) % len(p.methods)] for i in range(min(p.per_row, len(p.methods)))]
        return {"instruction": user, "answer": assistant, "system": system, "methods": picked, "method": picked[0]}

    def schema(self, row: dict, variables: dict[str, Any]) -> dict:
        return {"type": "object",
                "properties": {"instruction": {"type": "string", "minLength": 10},
                               "answer": {"type": "string", "minLength": 2}},
                "required": ["instruction", "answer"]}

    def requests(self, row: dict, messages: list[dict], variables: dict[str, Any]) -> list[ChatRequest]:
        schema = self.schema(row, variables)
        return [self.request(row, self.prompt.render({**variables, "method": m}), schema)
                for m in variables["methods"]]

    def build(self, row: dict, responses: list[ChatResponse], variables: dict[str, Any]) -> Outcome:
        p: EvolInstructParams = self.params
        made = []
        for method, resp in zip(variables["methods"], responses):
            evolved, answer = str(resp.parsed["instruction"]).strip(), str(resp.parsed["answer"]).strip()
            reason = elimination_reason(variables["instruction"], evolved, answer, p.max_similarity)
            if reason:
                self.stat_update(f"evol_instruct.rejected.{reason}")
                continue
            turns = [("system", variables["system"])] if variables["system"] else []
            new = self.derived_row(row, len(made), resp.model,
                                   messages=messages(*turns, ("user", evolved), ("assistant", answer)))
            made.append(annotate(new, "evol_instruct.method", method))
            self.stat_update(f"evol_instruct.evolved.{method}")
        if not made and not p.keep_source:
            return Drop(row, "no_usable_evolution")
        return [row, *made] if p.keep_source else made
