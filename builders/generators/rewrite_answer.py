"""Doctor-answer rewriting, as DISC-MedLLM did for real consultations: the patient's words
stay exactly as they were; every doctor turn is rewritten to be complete, accurate and
polite, without what only made sense on the original website: references to images the
patient uploaded, to a specific hospital or clinic, to booking an appointment with this
doctor, links and site names.

A rewrite that still contains such a reference is dropped (``rewrite_kept_references``),
since training on it would teach the model to promise things it cannot do. The kinds of
reference the rewrite removed are recorded in ``meta.annotations["rewrite_answer.removed"]``.
The row keeps its id and TRL type (``messages`` or ``prompt``/``completion``).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field

from meddata.llm import ChatResponse
from meddata.llm.conversation import turns_of
from meddata.llm.generator import LLMGenerator
from meddata.llm.scope import ScopedParams, in_scope
from meddata.records import annotate, detect_type
from meddata.registry import register
from meddata.steps import Drop, Outcome

#: What a rewritten doctor turn must not contain, by kind.
REFERENCES: dict[str, re.Pattern[str]] = {
    "image": re.compile(r"\b(?:images?|pictures?|photos?|photographs?|attachments?|uploaded|"
                        r"you(?:'ve| have)? (?:attached|uploaded|sent|shared|posted)|"
                        r"attached (?:reports?|scans?|files?|x-?rays?|results?))\b", re.I),
    "hospital": re.compile(r"\b(?:[A-Z][\w'.-]+\s+){1,4}(?:Hospital|Clinic|Medical (?:Center|Centre)|Infirmary|"
                           r"Health (?:Center|Centre))\b|\b(?:our|my) (?:hospital|clinic|centre|center|practice)\b"),
    "appointment": re.compile(r"\b(?:book|schedule|make|fix|take) (?:an? |your |my )?(?:appointment|consultation)\b|"
                              r"\bappointment with me\b|\b(?:contact|consult|visit|call) (?:me|us)\b|"
                              r"\bask a doctor online\b|\bfollow up with me\b", re.I),
    "link": re.compile(r"https?://|\bwww\.|\b(?:chat ?doctor|health ?care ?magic|icliniq)\b", re.I),
}


def references_in(text: str) -> list[str]:
    """Kinds of site-specific reference found in ``text``."""
    return [kind for kind, pattern in REFERENCES.items() if pattern.search(text)]


class RewriteAnswerParams(ScopedParams):
    max_tokens: int = Field(default=2048, ge=1)


@register
class RewriteAnswer(LLMGenerator):
    name = "rewrite_answer"
    description = "LLM: rewrite doctor turns to be complete and polite, keeping patient turns (DISC-MedLLM)."
    Params = RewriteAnswerParams
    template_file = "rewrite_answer.jinja"
    input_columns = ("messages", "prompt", "completion")
    output_columns = ("messages", "prompt", "completion")

    def applies_to(self, row: dict) -> bool:
        turns = turns_of(row)
        return in_scope(self.params, row) and bool(turns) and any(t["role"] == "assistant" for t in turns) and any(t["role"] == "user" for t in turns)

    def prepare(self, row: dict) -> dict[str, Any]:
        turns = [t for t in turns_of(row) or [] if t["role"] != "system"]
        return {"turns": turns, "n_doctor": sum(t["role"] == "assistant" for t in turns)}

    def schema(self, row: dict, variables: dict[str, Any]) -> dict:
        n = variables["n_doctor"]
        return {"type": "object", "required": ["rewritten"], "properties": {"rewritten": {
            "type": "array", "items": {"type": "string", "minLength": 2}, "minItems": n, "maxItems": n}}}

    def build(self, row: dict, responses: list[ChatResponse], variables: dict[str, Any]) -> Outcome:
        resp = responses[0]
        new_turns = [str(t).strip() for t in resp.parsed["rewritten"]]
        if any(not t for t in new_turns):
            return self.quarantine(row, resp, "a rewritten doctor turn is empty")
        kept = sorted({kind for t in new_turns for kind in references_in(t)})
        self.mark_generated(row, resp.model)
        if kept:
            for kind in kept:
                self.stat_update(f"rewrite_answer.kept.{kind}")
            return Drop(row, "rewrite_kept_references")
        before = sorted({kind for t in variables["turns"] if t["role"] == "assistant" for kind in references_in(t["content"])})
        for kind in before:
            self.stat_update(f"rewrite_answer.removed.{kind}")
        self._replace_doctor_turns(row, new_turns)
        self.stat_update("rewrite_answer.turns", len(new_turns))
        return annotate(row, "rewrite_answer.removed", before)

    @staticmethod
    def _replace_doctor_turns(row: dict, new_turns: list[str]) -> None:
        """Put the rewritten doctor turns in place; user and system turns stay as they were."""
        it = iter(new_turns)
        cols = ("messages",) if detect_type(row) == "conversational" else ("prompt", "completion")
        for col in cols:
            row[col] = [{"role": m["role"], "content": next(it) if m["role"] == "assistant" else m["content"]}
                        for m in row[col]]
