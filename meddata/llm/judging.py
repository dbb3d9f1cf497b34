"""LLM judging outside a pipeline, shared by the ``judge`` filter and ``meddata eval``'s judge:
the medical rubric (:mod:`meddata.llm.rubric`) for many items in one batch, and the pairwise
comparison of two answers, asked in both orders to cancel position bias (HuatuoGPT, MT-Bench).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from meddata.llm.prompting import PromptTemplate
from meddata.llm.rubric import JUDGE_TEMPLATE, RubricScore, judge_messages, parse_rubric, rubric_schema
from meddata.llm.types import ChatRequest, ChatResponse

PAIRWISE_TEMPLATE = "judge_pairwise.jinja"
PAIRWISE_SCHEMA = {"type": "object", "required": ["winner", "reason"],
                   "properties": {"winner": {"type": "string", "enum": ["A", "B", "tie"]},
                                  "reason": {"type": "string"}}}


class JudgeError(RuntimeError):
    """The judge LLM gave no usable verdict. The message names the reason, never the text."""


# -- rubric, outside a pipeline ----------------------------------------------------------------------
@dataclass(frozen=True)
class RubricItem:
    """One conversation to grade (every assistant turn is graded), optionally against a reference."""

    turns: list[dict[str, str]]
    reference: str | None = None
    #: Of the material the prompt is built from; the client's PHI guard reads it.
    phi_status: str = "not_applicable"
    key: str | None = None


def rubric_request(template: PromptTemplate, item: RubricItem, *, max_tokens: int = 512,
                   seed: int | None = None) -> ChatRequest:
    """The rubric request for one item: deterministic, constrained to the rubric's JSON schema."""
    return ChatRequest(messages=judge_messages(template, item.turns, item.reference), temperature=0.0,
                       max_tokens=max_tokens, seed=seed, json_schema=rubric_schema(),
                       phi_status=item.phi_status, key=item.key)


def rubric_verdict(resp: ChatResponse) -> RubricScore:
    """The rubric scores in one judge answer. Raises ValueError naming the reason (never the text)."""
    if resp.error is not None:
        raise ValueError(resp.error)
    return parse_rubric(resp.parsed)


def rubric_judge_many(client: Any, items: Sequence[RubricItem], *, template: PromptTemplate | None = None,
                      max_tokens: int = 512, seed: int | None = None) -> list[RubricScore | JudgeError]:
    """Grade many items in one batch with the rubric (1-5 per criterion). Per item the
    :class:`RubricScore`, or a :class:`JudgeError` (returned, not raised) when the judge gave
    no usable answer, so one failure never costs the rest of the batch.
    """
    tmpl = template or PromptTemplate.shipped(JUDGE_TEMPLATE)
    requests = [rubric_request(tmpl, it, max_tokens=max_tokens, seed=seed) for it in items]
    responses = client.generate(requests) if requests else []
    out: list[RubricScore | JudgeError] = []
    for resp in responses:
        try:
            out.append(rubric_verdict(resp))
        except ValueError as exc:
            out.append(JudgeError(f"rubric judge: {exc}"))
    return out


# -- pairwise ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PairwiseItem:
    """One comparison: which of two answers to ``question`` is better."""

    question: str
    answer_a: str
    answer_b: str
    reference: str | None = None
    #: Of the material the prompt is built from; the client's PHI guard reads it.
    phi_status: str = "not_applicable"
    key: str | None = None


def _verdict_of(resp: ChatResponse, first: str, second: str) -> tuple[str | None, str, str | None]:
    """(a|b|tie or None, reason, error) for one ordered comparison where A was ``first``."""
    if resp.error is not None:
        return None, "", resp.error
    parsed = resp.parsed if isinstance(resp.parsed, Mapping) else {}
    winner = parsed.get("winner")
    if winner not in ("A", "B", "tie"):
        return None, "", "field 'winner' must be A, B or tie"
    reason = str(parsed.get("reason") or "").strip()
    return {"A": first, "B": second, "tie": "tie"}[winner], reason, None


def pairwise_judge_many(client: Any, items: Sequence[PairwiseItem], *, template: PromptTemplate | None = None,
                        max_tokens: int = 300, seed: int | None = None) -> list[dict[str, Any]]:
    """Judge many pairs in one batch (2 requests each: A/B and swapped). Per item:
    ``{"winner": "a"|"b"|"tie", "reasons": [r1, r2], "consistent": bool, "verdicts": [v1, v2]}``,
    or ``{"winner": None, "error": ...}`` when the judge gave no usable verdict.

    Position swap: the verdict counts only when both orders agree; when they disagree (the
    judge preferred a position, not an answer) the result is a tie, as in MT-Bench and
    HuatuoGPT's evaluation.
    """
    tmpl = template or PromptTemplate.shipped(PAIRWISE_TEMPLATE)
    requests = []
    for it in items:
        for a, b in ((it.answer_a, it.answer_b), (it.answer_b, it.answer_a)):
            msgs = tmpl.render({"question": it.question, "answer_a": a, "answer_b": b, "reference": it.reference})
            requests.append(ChatRequest(messages=msgs, temperature=0.0, max_tokens=max_tokens, seed=seed,
                                        json_schema=PAIRWISE_SCHEMA, phi_status=it.phi_status, key=it.key))
    responses = client.generate(requests) if requests else []
    results = []
    for n in range(len(items)):
        v1, r1, e1 = _verdict_of(responses[2 * n], "a", "b")
        v2, r2, e2 = _verdict_of(responses[2 * n + 1], "b", "a")
        if e1 or e2:
            results.append({"winner": None, "error": e1 or e2})
            continue
        results.append({"winner": v1 if v1 == v2 else "tie", "reasons": [r1, r2], "consistent": v1 == v2,
                        "verdicts": [v1, v2], "prompt_id": tmpl.prompt_id})
    return results


def pairwise_judge(client: Any, question: str, answer_a: str, answer_b: str, *, reference: str | None = None,
                   phi_status: str = "not_applicable", template: PromptTemplate | None = None) -> dict[str, Any]:
    """Which answer is better: ``{"winner": "a"|"b"|"tie", "reasons": [...], "consistent": bool}``.

    ``client`` is a meddata LLM client (``ctx.llm(name)`` or ``meddata.llm.client_for``).
    ``phi_status`` describes the question and answers (the guard refuses raw PHI to remote
    endpoints). Raises :class:`JudgeError` when the judge gives no usable verdict.
    """
    item = PairwiseItem(question, answer_a, answer_b, reference, phi_status)
    (result,) = pairwise_judge_many(client, [item], template=template)
    if result["winner"] is None:
        raise JudgeError(f"pairwise judge: {result['error']}")
    return result
