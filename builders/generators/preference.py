"""Preference pairs (``prompt``/``chosen``/``rejected``) for DPO and reward models.

* ``preference_rank`` – sample ``k`` answers per prompt from one LLM (different seeds,
  ``temperature`` > 0), grade each with the medical rubric judge (``rubric.py``; pointwise,
  so the order of the candidates cannot bias it) and pair the best against the worst. Pairs
  whose scores differ by less than ``min_margin`` carry no preference and are dropped
  (``no_preference_margin``); so are prompts whose samples were all the same text.
* ``preference_physician`` – ChiMed-GPT / MedicalGPT style: the physician's answer of a
  consultation is ``chosen`` and a model's answer to the same prompt is ``rejected``
  (dropped as ``model_answer_matches_physician`` when the two barely differ).

The answering prompt is the row's own conversation up to its last assistant turn, with the
``respond`` template's system prompt (a row's own system prompt wins) and its user block
wrapping the last user turn. ``meta.prompt_id`` names that template; the judge's template
id, model and scores go to ``meta.annotations["preference"]``.
"""

from __future__ import annotations

from typing import Any

from meddata.builders.generators.novelty import NoveltyPool
from pydantic import Field, field_validator

from meddata.llm import ChatRequest, ChatResponse, usage_counters
from meddata.llm.conversation import final_answer, split_system, turns_of
from meddata.llm.generator import LLMGenerator, check_template
from meddata.llm.prompting import PromptTemplate
from meddata.llm.rubric import (
    JUDGE_TEMPLATE,
    RubricScore,
    judge_messages,
    parse_rubric,
    rubric_schema,
)
from meddata.llm.scope import ScopedParams, in_scope
from meddata.params import InputPath
from meddata.records import annotate
from meddata.registry import register
from meddata.steps import Drop, Outcome, Quarantine, StepContext

JUDGE_STATS_PREFIX = "judge.llm."


def prompt_of(row: dict) -> list[dict[str, str]] | None:
    """The turns an answer continues: up to the last assistant turn, or the whole conversation
    when it ends with a user turn; None when there is nothing to answer."""
    found = final_answer(row)
    if found is not None:
        return found[0]
    turns = turns_of(row)
    if turns is None and row.get("prompt"):
        turns = [{"role": m["role"], "content": m["content"]} for m in row["prompt"]]
    if turns and turns[-1]["role"] == "user" and turns[-1]["content"].strip():
        return turns
    return None


def respond_messages(template: PromptTemplate, prefix: list[dict[str, str]]) -> list[dict[str, str]]:
    """The answering prompt: system prompt, earlier turns, the templated last user turn."""
    system, rest = split_system(prefix)
    rendered = template.render({"question": rest[-1]["content"], "history": rest[:-1]})
    sys_msgs = [{"role": "system", "content": system}] if system else [m for m in rendered if m["role"] == "system"]
    return [*sys_msgs, *rest[:-1], rendered[-1]]


class PreferenceRankParams(ScopedParams):
    k: int = Field(default=4, ge=2, le=16, description="answers sampled per prompt")
    temperature: float = Field(default=0.8, ge=0, le=2)
    judge_llm: str | None = Field(default=None, description="LLM that grades the answers; default: llm")
    judge_template: InputPath | None = None
    judge_max_tokens: int = Field(default=512, ge=1)
    min_margin: float = Field(default=0.5, ge=0, le=4, description="least mean-score gap between chosen and rejected")

    @field_validator("judge_template")
    @classmethod
    def _judge_compiles(cls, v: str | None) -> str | None:
        return check_template(v)


@register
class PreferenceRank(LLMGenerator):
    name = "preference_rank"
    description = "LLM: k sampled answers per prompt graded by a rubric judge -> best vs worst preference pair."
    Params = PreferenceRankParams
    template_file = "respond.jinja"
    input_columns = ("messages", "prompt")
    output_columns = ("prompt", "chosen", "rejected")
    worker_state = (*LLMGenerator.worker_state, "_judge")

    def setup(self, ctx: StepContext) -> None:
        super().setup(ctx)
        path = self.params.judge_template
        self._judge = PromptTemplate.load(path) if path else PromptTemplate.shipped(JUDGE_TEMPLATE)

    def applies_to(self, row: dict) -> bool:
        return in_scope(self.params, row) and prompt_of(row) is not None

    def process_batch(self, rows: list[dict], ctx: StepContext) -> list[Outcome]:
        p: PreferenceRankParams = self.params
        outcomes: list[Outcome | None] = [None] * len(rows)
        prefixes: dict[int, list[dict]] = {}
        for i, row in enumerate(rows):
            prefix = prompt_of(row) if self.applies_to(row) else None
            if prefix is None:
                self.stat_update(f"{self.name}.other_rows")
                outcomes[i] = row if p.other_rows == "keep" else Drop(row, "other_row_type")
            else:
                prefixes[i] = prefix
        # 1. k samples per prompt
        samples = self._generate(ctx, p.llm, [
            self.request(rows[i], respond_messages(self.prompt, prefix), None, seed=(p.seed or 0) + j)
            for i, prefix in prefixes.items() for j in range(p.k)], "llm.")
        candidates: dict[int, list[str]] = {}
        models: dict[int, str] = {}
        for n, i in enumerate(prefixes):
            answers = samples[n * p.k : (n + 1) * p.k]
            failed = next((r for r in answers if r.error is not None), None)
            texts = list(dict.fromkeys(a.text.strip() for a in answers if failed is None and (a.text or "").strip()))
            models[i] = answers[0].model
            if failed is not None:
                outcomes[i] = self.quarantine(rows[i], failed)
            elif len(texts) < 2:
                self.stat_update("preference_rank.identical_samples")
                outcomes[i] = Drop(self.mark_generated(rows[i], answers[0].model), "identical_samples")
            else:
                candidates[i] = texts
        # 2. the rubric judge grades every distinct answer
        schema = rubric_schema()
        judge_reqs = []
        for i, texts in candidates.items():
            for text in texts:
                graded = [*prefixes[i], {"role": "assistant", "content": text}]
                judge_reqs.append(self.request(rows[i], judge_messages(self._judge, graded), schema,
                                               temperature=0.0, max_tokens=p.judge_max_tokens, seed=p.seed))
        grades = self._generate(ctx, p.judge_llm or p.llm, judge_reqs, JUDGE_STATS_PREFIX)
        pos = 0
        for i, texts in candidates.items():
            mine = grades[pos : pos + len(texts)]
            pos += len(texts)
            outcomes[i] = self._pair(rows[i], prefixes[i], texts, mine, models[i])
        return outcomes  # type: ignore[return-value]

    def _generate(self, ctx: StepContext, llm: str, requests: list[ChatRequest], stats_prefix: str) -> list[ChatResponse]:
        """Send one batch to ``llm``; its token usage goes to counters under ``stats_prefix``."""
        responses = self.client(ctx, llm).generate(requests) if requests else []
        for key, value in usage_counters(responses, stats_prefix).items():
            self.stat_update(key, value)
        return responses

    def _pair(self, row: dict, prefix: list[dict], texts: list[str], grades: list[ChatResponse], model: str) -> Outcome:
        failed = next((g for g in grades if g.error is not None), None)
        if failed is not None:
            return self.quarantine(row, failed, f"judge: {failed.error}")
        try:
            scored: list[RubricScore] = [parse_rubric(g.parsed) for g in grades]
        except ValueError as exc:
            return self.quarantine(row, grades[0], f"judge: {exc}")
        order = sorted(range(len(texts)), key=lambda j: scored[j].rank_key(), reverse=True)
        best, worst = order[0], order[-1]
        margin = scored[best].mean - scored[worst].mean
        info = {"means": [round(s.mean, 3) for s in scored], "chosen": best, "rejected": worst,
                "margin": round(margin, 3), "judge_prompt_id": self._judge.prompt_id,
                "judge_model": grades[0].model, "candidates": len(texts)}
        if margin < self.params.min_margin or margin == 0:
            self.stat_update("preference_rank.no_margin")
            return Drop(annotate(self.mark_generated(row, model), "preference", info), "no_preference_margin")
        new = self.derived_row(row, 0, model, prompt=prefix,
                               chosen=[{"role": "assistant", "content": texts[best]}],
                               rejected=[{"role": "assistant", "content": texts[worst]}])
        self.stat_update("preference_rank.pairs")
        return annotate(new, "preference", info)


class PreferencePhysicianParams(ScopedParams):
    max_similarity: float = Field(default=0.9, gt=0, le=1,
                                  description="model answers this similar (ROUGE-L) to the physician's are dropped")


@register
class PreferencePhysician(LLMGenerator):
    name = "preference_physician"
    description = "LLM: physician's answer as chosen vs a model's answer as rejected (ChiMed-GPT/MedicalGPT)."
    Params = PreferencePhysicianParams
    template_file = "respond.jinja"
    input_columns = ("messages", "prompt", "completion")
    output_columns = ("prompt", "chosen", "rejected")

    def applies_to(self, row: dict) -> bool:
        return in_scope(self.params, row) and final_answer(row) is not None

    def prepare(self, row: dict) -> dict[str, Any]:
        prefix, physician = final_answer(row)  # type: ignore[misc]
        _, rest = split_system(prefix)
        return {"prefix": prefix, "physician": physician, "question": rest[-1]["content"], "history": rest[:-1]}

    def requests(self, row: dict, messages: list[dict], variables: dict[str, Any]) -> list[ChatRequest]:
        return [self.request(row, respond_messages(self.prompt, variables["prefix"]))]

    def build(self, row: dict, responses: list[ChatResponse], variables: dict[str, Any]) -> Outcome | Quarantine:
        resp = responses[0]
        answer = (resp.text or "").strip()
        if not answer:
            return self.quarantine(row, resp, "the model's answer is empty")
        pool = NoveltyPool(self.params.max_similarity)
        pool.add(variables["physician"])
        if not pool.add_if_novel(answer)[0]:
            self.stat_update("preference_physician.same_as_physician")
            return Drop(self.mark_generated(row, resp.model), "model_answer_matches_physician")
        new = self.derived_row(row, 0, resp.model, prompt=variables["prefix"],
                               chosen=[{"role": "assistant", "content": variables["physician"]}],
                               rejected=[{"role": "assistant", "content": answer}])
        self.stat_update("preference_physician.pairs")
        return new

