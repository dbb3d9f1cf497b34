"""LLM judges: the ``judge`` filter (a medical rubric, pointwise) and :func:`pairwise_judge`
(HuatuoGPT-style comparison of two answers, asked in both orders to cancel position bias).
The same machinery (:mod:`meddata.llm.judging`, in the core) grades models in ``meddata eval``
(``meddata.trainers.judge``): :func:`rubric_judge_many` (the rubric, optionally against a
reference answer) and :func:`pairwise_judge_many`, so dataset filtering and evaluation judge
with one prompt each.

The ``judge`` filter grades the assistant turns of conversational and prompt/completion
rows on accuracy, safety/harm, helpfulness and completeness, 1-5 each with a one-sentence
reason (``meddata/llm/rubric.py``), and stores them in
``meta.annotations["judge"]``. In ``mode: filter`` a row is dropped as
``judge_below_threshold`` when its overall score (the ``aggregate`` of the four: mean or
min) is below ``min_score``, or its safety score is below ``min_safety`` (an answer judged
harmful never passes on the strength of its other scores). ``mode: annotate`` keeps every
row. A judge answer that is not valid JSON even after the client's repair turn quarantines
the row, with the reason: a row is never dropped or kept on a judgment that did not happen.

Reasons can quote the conversation, so for rows whose ``phi_status`` is ``raw`` they are
not stored (the scores are).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, field_validator

from meddata.llm import ChatRequest, ChatResponse, usage_counters
from meddata.llm.conversation import turns_of
from meddata.llm.generator import LLMStepState, check_template, phi_status_of, raw_output_note
from meddata.llm.guard import is_safe_status
from meddata.llm.judging import RubricItem, rubric_request, rubric_verdict
from meddata.llm.prompting import PromptTemplate
from meddata.llm.rubric import JUDGE_TEMPLATE
from meddata.llm.scope import in_scope
from meddata.params import InputPath
from meddata.records import annotate
from meddata.registry import register
from meddata.steps import Drop, Filter, Outcome, Quarantine, StepContext, StepParams


class JudgeParams(StepParams):
    llm: str = Field(description="name of an LLM in the recipe's 'llms' section")
    template: InputPath | None = Field(default=None, description="Jinja file replacing the shipped rubric prompt")
    mode: Literal["filter", "annotate"] = "filter"
    min_score: float = Field(default=4.0, ge=1, le=5, description="overall score a row needs (mode: filter)")
    aggregate: Literal["mean", "min"] = Field(default="mean", description="overall score: mean or lowest criterion")
    min_safety: int | None = Field(default=3, ge=1, le=5, description="safety score a row needs; null: no check")
    other_rows: Literal["keep", "drop"] = Field(default="keep", description="rows with no answer to judge")
    sources: list[str] | None = Field(default=None, min_length=1, description="judge only rows of these sources")
    max_tokens: int = Field(default=512, ge=1)
    seed: int | None = None

    @field_validator("template")
    @classmethod
    def _template_compiles(cls, v: str | None) -> str | None:
        return check_template(v)


@register
class Judge(LLMStepState, Filter):
    name = "judge"
    description = "LLM judge: score answers 1-5 on accuracy, safety, helpfulness, completeness; drop below min_score."
    Params = JudgeParams
    input_columns = ("messages", "prompt", "completion")
    batch_size = 256

    def _load_prompt(self) -> PromptTemplate:
        path = self.params.template
        return PromptTemplate.load(path) if path else PromptTemplate.shipped(JUDGE_TEMPLATE)

    @staticmethod
    def judged_turns(row: Mapping[str, Any]) -> list[dict[str, str]] | None:
        """The conversation to grade, when it has an assistant turn; else None."""
        turns = turns_of(row)
        if not turns or not any(t["role"] == "assistant" and t["content"].strip() for t in turns):
            return None
        return turns

    def process(self, row: dict, ctx: StepContext) -> Outcome:
        return self.process_batch([row], ctx)[0]

    def process_batch(self, rows: list[dict], ctx: StepContext) -> list[Outcome]:
        p: JudgeParams = self.params
        outcomes: list[Outcome | None] = [None] * len(rows)
        todo: list[int] = []
        requests: list[ChatRequest] = []
        for i, row in enumerate(rows):
            turns = self.judged_turns(row) if in_scope(p, row) else None
            if turns is None:
                self.stat_update("judge.other_rows")
                outcomes[i] = row if p.other_rows == "keep" else Drop(row, "other_row_type")
                continue
            todo.append(i)
            item = RubricItem(turns, phi_status=phi_status_of(row), key=row.get("id"))
            requests.append(rubric_request(self.prompt, item, max_tokens=p.max_tokens, seed=p.seed))
        responses = self.client(ctx).generate(requests) if requests else []
        for key, value in usage_counters(responses).items():
            self.stat_update(key, value)
        for i, resp in zip(todo, responses):
            outcomes[i] = self._verdict(rows[i], resp)
        return outcomes  # type: ignore[return-value]

    def _verdict(self, row: dict, resp: ChatResponse) -> Outcome:
        p: JudgeParams = self.params
        try:
            score = rubric_verdict(resp)
        except ValueError as exc:
            self.stat_update("judge.failed")
            return _quarantine(self.name, row, resp, str(exc))
        overall = score.aggregate(p.aggregate)
        info = {**score.as_annotation(with_reasons=is_safe_status(phi_status_of(row))), "overall": round(overall, 3),
                "model": resp.model, "prompt_id": self.prompt.prompt_id}
        below = overall < p.min_score
        unsafe = p.min_safety is not None and score.scores["safety"] < p.min_safety
        info["passed"] = not (below or unsafe)
        annotate(row, "judge", info)
        for c, v in score.scores.items():
            self.stat_update(f"judge.score.{c}", v)
        self.stat_update("judge.judged")
        if p.mode == "filter" and (below or unsafe):
            self.stat_update("judge.below_threshold" if below else "judge.unsafe")
            return Drop(row, "judge_below_threshold")
        return row


def _quarantine(step: str, row: dict, resp: ChatResponse, reason: str) -> Quarantine:
    return Quarantine(error=f"{step}: unusable judge answer: {reason}{raw_output_note(row, resp)}", row=row)
