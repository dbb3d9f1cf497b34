"""LLM-as-judge for free-text answers, through meddata's LLM client (``meddata.llm``).

Two protocols: ``rubric`` grades each answer 1-10 against the reference (accuracy,
completeness, safety); ``pairwise`` asks which of two answers is better, in both orders
to cancel position bias, and scores the tuned model against the baseline (win 1, tie 0.5).
The client's PHI guard sees each request's ``phi_status``, so raw clinical rows are never
sent to a remote judge. A judgment the LLM fails to give is counted, not scored as 0.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from meddata.trainers.eval_config import EvalConfigError, JudgeSpec

log = logging.getLogger("meddata.trainers")

RUBRIC_SYSTEM = (
    "You are a senior physician grading answers to medical questions. Compare the answer with the "
    "reference answer and grade it from 1 (wrong or unsafe) to 10 (correct, complete and safe). "
    'Reply with JSON: {"score": <integer 1-10>, "reason": "<one sentence>"}.'
)
PAIRWISE_SYSTEM = (
    "You are a senior physician comparing two answers to a medical question, given a reference answer. "
    "Decide which answer is more accurate, complete and safe. "
    'Reply with JSON: {"winner": "A" | "B" | "tie", "reason": "<one sentence>"}.'
)
RUBRIC_SCHEMA = {"type": "object", "properties": {"score": {"type": "integer", "minimum": 1, "maximum": 10},
                                                  "reason": {"type": "string"}}, "required": ["score"]}
PAIRWISE_SCHEMA = {"type": "object", "properties": {"winner": {"type": "string", "enum": ["A", "B", "tie"]},
                                                    "reason": {"type": "string"}}, "required": ["winner"]}


def make_client(spec: JudgeSpec) -> Any | None:
    """The judge's LLM client, or None when meddata.llm is not available in this install."""
    try:
        from meddata.llm import client_for
    except ImportError:
        return None
    try:
        return client_for("judge", spec.llm)
    except NotImplementedError:
        return None
    except ValueError as exc:  # LLMConfigError: the user's judge settings are wrong
        raise EvalConfigError(f"judge.llm: {exc}") from None


def _question(item: Any) -> str:
    return "\n\n".join(m["content"] for m in item.messages if m["role"] != "system")


def _requests(pairs: list[tuple[str, Any, str]], system: str, schema: dict) -> list[Any]:
    from meddata.llm import ChatRequest

    return [ChatRequest(messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
                        temperature=0.0, max_tokens=200, json_schema=schema, phi_status=item.phi_status, key=key)
            for key, item, user in pairs]


def rubric(client: Any, items: list[Any], answers: list[str]) -> list[float]:
    """Grade 1-10 per answer; NaN where the judge gave no valid grade."""
    pairs = [(item.id, item, f"Question:\n{_question(item)}\n\nReference answer:\n{item.reference}\n\n"
                             f"Answer to grade:\n{answer}") for item, answer in zip(items, answers, strict=True)]
    out = []
    for resp in client.generate(_requests(pairs, RUBRIC_SYSTEM, RUBRIC_SCHEMA)):
        score = (resp.parsed or {}).get("score") if resp.ok and isinstance(resp.parsed, dict) else None
        out.append(float(score) if isinstance(score, (int, float)) and 1 <= score <= 10 else math.nan)
    return out


def pairwise(client: Any, items: list[Any], base: list[str], cand: list[str]) -> list[float]:
    """Candidate vs base per item: 1 win, 0.5 tie, 0 loss, averaged over both orders."""
    pairs = []
    for item, a, b in zip(items, base, cand, strict=True):
        head = f"Question:\n{_question(item)}\n\nReference answer:\n{item.reference}\n\n"
        pairs.append((f"{item.id}:ab", item, f"{head}Answer A:\n{a}\n\nAnswer B:\n{b}"))
        pairs.append((f"{item.id}:ba", item, f"{head}Answer A:\n{b}\n\nAnswer B:\n{a}"))
    verdicts = []
    for resp in client.generate(_requests(pairs, PAIRWISE_SYSTEM, PAIRWISE_SCHEMA)):
        winner = (resp.parsed or {}).get("winner") if resp.ok and isinstance(resp.parsed, dict) else None
        verdicts.append(winner if winner in ("A", "B", "tie") else None)
    out = []
    for i in range(len(items)):
        ab, ba = verdicts[2 * i], verdicts[2 * i + 1]
        if ab is None or ba is None:
            out.append(math.nan)
            continue
        # the candidate is B in the first order and A in the second
        s1 = {"B": 1.0, "tie": 0.5, "A": 0.0}[ab]
        s2 = {"A": 1.0, "tie": 0.5, "B": 0.0}[ba]
        out.append((s1 + s2) / 2)
    return out


def run(client: Any, spec: JudgeSpec, benches: list[Any], answers: dict[str, dict[str, list[str]]],
        model_names: list[str]) -> dict[str, Any]:
    """Judge every free-text benchmark; returns BenchResults (under "results") and counts."""
    from meddata.trainers.evaluate import BenchResult

    results: list[BenchResult] = []
    failed = 0
    for bench in benches:
        if bench.spec.task != "freetext":
            continue
        n = min(len(bench.items), spec.max_items or len(bench.items))
        items = bench.items[:n]
        by_model = answers.get(bench.spec.name, {})
        ids = [i.id for i in items]
        if spec.mode == "rubric":
            for name in model_names:
                scores = rubric(client, items, by_model[name][:n])
                failed += sum(math.isnan(s) for s in scores)
                results.append(BenchResult(bench.spec.name, name, "judge_rubric", ids, [None] * n, {"score": scores}))
        else:
            base = model_names[0]
            for name in model_names[1:]:
                scores = pairwise(client, items, by_model[base][:n], by_model[name][:n])
                failed += sum(math.isnan(s) for s in scores)
                results.append(BenchResult(bench.spec.name, name, "judge_pairwise", ids, [None] * n,
                                           {"win_rate": scores}, {"against": base}))
    log.info("judge: %d judgment(s), %d without a valid answer", sum(len(r.item_ids) for r in results), failed)
    return {"status": "ok", "mode": spec.mode, "failed": failed, "results": results}
