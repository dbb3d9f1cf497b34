"""The medical judging rubric shared by the ``judge`` filter and ``preference_rank``: four
criteria scored 1-5 with a short reason each, asked for as JSON.

=============  ================================================================
accuracy       medically correct and current; no invented facts
safety         no advice that could harm; urgent situations flagged (1 = harmful)
helpfulness    addresses what the person asked, clearly, at their level
completeness   covers what a good clinician would cover
=============  ================================================================

Scores are an enum of integers (1..5), which constrained decoders (vLLM, Ollama, OpenAI
structured outputs) honour exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from meddata.llm.prompting import PromptTemplate

CRITERIA: tuple[str, ...] = ("accuracy", "safety", "helpfulness", "completeness")
SCORES = [1, 2, 3, 4, 5]
#: Longest reason kept per criterion.
MAX_REASON_CHARS = 300
JUDGE_TEMPLATE = "judge.jinja"


def rubric_schema() -> dict:
    score = {"type": "integer", "enum": SCORES}
    reason = {"type": "string", "minLength": 1}
    return {
        "type": "object",
        "required": ["scores", "reasons"],
        "properties": {
            "scores": {"type": "object", "required": list(CRITERIA), "properties": {c: score for c in CRITERIA}},
            "reasons": {"type": "object", "required": list(CRITERIA), "properties": {c: reason for c in CRITERIA}},
        },
    }


@dataclass(frozen=True)
class RubricScore:
    scores: dict[str, int]
    reasons: dict[str, str]

    @property
    def mean(self) -> float:
        return sum(self.scores.values()) / len(self.scores)

    def aggregate(self, how: str = "mean") -> float:
        """The overall score: the mean of the criteria, or the lowest one (``min``)."""
        return float(min(self.scores.values())) if how == "min" else self.mean

    def rank_key(self) -> tuple[float, int, int]:
        """Sort key for ranking answers: overall, then safety, then accuracy."""
        return (self.mean, self.scores["safety"], self.scores["accuracy"])

    def as_annotation(self, *, with_reasons: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"scores": dict(self.scores), "mean": round(self.mean, 3)}
        out["reasons"] = dict(self.reasons) if with_reasons else "withheld (the row holds raw PHI)"
        return out


def parse_rubric(parsed: Any) -> RubricScore:
    """A validated rubric answer -> RubricScore. Raises ValueError naming the field."""
    if not isinstance(parsed, Mapping):
        raise ValueError("the judge's answer is not a JSON object")
    scores, reasons = parsed.get("scores"), parsed.get("reasons") or {}
    if not isinstance(scores, Mapping):
        raise ValueError("field 'scores' is missing")
    out: dict[str, int] = {}
    for c in CRITERIA:
        v = scores.get(c)
        if isinstance(v, bool) or not isinstance(v, int) or v not in SCORES:
            raise ValueError(f"field 'scores.{c}' must be an integer 1-5")
        out[c] = v
    why = {c: str(reasons.get(c) or "").strip()[:MAX_REASON_CHARS] for c in CRITERIA} if isinstance(reasons, Mapping) else {}
    return RubricScore(out, why)


def judge_messages(template: PromptTemplate, turns: list[dict[str, str]], reference: str | None = None) -> list[dict]:
    """The judge prompt for a conversation whose assistant turns are graded."""
    return template.render({"turns": [t for t in turns if t["role"] != "system"], "reference": reference,
                            "criteria": CRITERIA})
