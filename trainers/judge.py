"""LLM-as-judge for free-text answers in ``meddata eval``, through meddata's LLM client.

The prompts, schemas and parsing are the ``judge`` filter's (``meddata.llm.judging``), so
a dataset and a model are judged the same way. Two protocols: ``rubric`` grades each answer
against the reference on the filter's medical rubric (accuracy, safety, helpfulness,
completeness, 1-5 each) and reports the mean mapped onto 1-10; ``pairwise`` asks which of
two answers is better, in both orders to cancel position bias, and scores the tuned model
against the baseline (win 1, tie 0.5, loss 0, averaged over the two orders). The client's
PHI guard sees each request's ``phi_status``, so raw clinical rows are never sent to a
remote judge. A judgment the LLM fails to give is counted, not scored as 0.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from meddata.trainers.eval_config import EvalConfigError, JudgeSpec
from meddata.trainers.scoring import BenchResult

from meddata.llm import client_for
from meddata.llm.judging import JudgeError, PairwiseItem, RubricItem, pairwise_judge_many, rubric_judge_many

log = logging.getLogger("meddata.trainers")

#: Points for the candidate per verdict of one order ("a" is the baseline, "b" the candidate).
_CANDIDATE_POINTS = {"b": 1.0, "tie": 0.5, "a": 0.0}


def make_client(spec: JudgeSpec) -> Any | None:
    """The judge's LLM client, or None when its backend is not available in this install."""
    try:
        return client_for("judge", spec.llm)
    except NotImplementedError:
        return None
    except ValueError as exc:  # LLMConfigError: the user's judge settings are wrong
        raise EvalConfigError(f"judge.llm: {exc}") from None


def _question(item: Any) -> str:
    return "\n\n".join(m["content"] for m in item.messages if m["role"] != "system")


def to_ten(mean: float) -> float:
    """A rubric mean on 1-5 mapped linearly onto the 1-10 scale eval reports (1 -> 1, 5 -> 10)."""
    return 1.0 + (mean - 1.0) * 9.0 / 4.0


def rubric(client: Any, items: list[Any], answers: list[str]) -> list[float]:
    """Grade 1-10 per answer; NaN where the judge gave no valid grade."""
    graded = [RubricItem([{"role": "user", "content": _question(item)}, {"role": "assistant", "content": answer}],
                         reference=item.reference, phi_status=item.phi_status, key=item.id)
              for item, answer in zip(items, answers, strict=True)]
    return [math.nan if isinstance(v, JudgeError) else to_ten(v.mean) for v in rubric_judge_many(client, graded)]


def pairwise(client: Any, items: list[Any], base: list[str], cand: list[str]) -> list[float]:
    """Candidate vs base per item: 1 win, 0.5 tie, 0 loss, averaged over both orders."""
    pairs = [PairwiseItem(_question(item), a, b, reference=item.reference, phi_status=item.phi_status, key=item.id)
             for item, a, b in zip(items, base, cand, strict=True)]
    return [math.nan if res["winner"] is None else sum(_CANDIDATE_POINTS[v] for v in res["verdicts"]) / 2
            for res in pairwise_judge_many(client, pairs)]


def run(client: Any, spec: JudgeSpec, benches: list[Any], answers: dict[str, dict[str, list[str]]],
        model_names: list[str]) -> dict[str, Any]:
    """Judge every free-text benchmark; returns BenchResults (under "results") and counts."""
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
