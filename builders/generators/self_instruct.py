"""Self-instruct from clinician-style seed tasks (AlpaCare / HuatuoGPT style).

Two steps. The ``seed_tasks`` builder reads seed tasks (``instruction``, optional ``input``,
``output``, and ``topic``/``view``/``type``/``difficulty`` labels) from a JSONL file; the
shipped ``data/seed_tasks.jsonl`` holds 36 tasks written for meddata across specialties,
audiences (patient, caregiver, student, clinician, researcher) and task types (triage,
calculation, summarisation, plain language, drug interactions...). The ``self_instruct``
generator shows the model each seed row with a few other seeds as demonstrations and asks
for new, different tasks with their answers.

A new instruction is kept only when its ROUGE-L against every instruction seen so far (the
seed pool, this step's input rows and the instructions it has already kept) stays below
``max_similarity`` (0.7 as in self-instruct), and when it is not a task a text model cannot
do (images, files, drawings). The pool lives in one process: with ``num_proc > 1`` each
worker keeps its own, so run ``exact_dedup``/``minhash_dedup`` after this step.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from meddata.builders.generators.novelty import NoveltyPool
from pydantic import Field

from meddata import io
from meddata.llm import ChatRequest, ChatResponse
from meddata.llm.conversation import single_turn
from meddata.llm.generator import LLMGenerator
from meddata.llm.scope import ScopedParams, in_scope
from meddata.params import InputPath
from meddata.records import messages, new_meta, new_row
from meddata.registry import register
from meddata.steps import Builder, Drop, Outcome, Quarantine, StepContext, StepParams

SEED_FILE = Path(__file__).parent / "data" / "seed_tasks.jsonl"
SEED_LABELS = ("topic", "view", "type", "difficulty")
# Tasks a text-only model cannot carry out (self-instruct's blacklist, plus clinical ones).
_UNDOABLE = re.compile(
    r"\b(?:image|images|picture|photo|photograph|x-ray film|scan attached|graph|chart|diagram|draw|plot|"
    r"video|audio|file|attachment|website|url|go to|schedule an appointment)\b", re.I)
MIN_WORDS, MAX_WORDS = 3, 150


def seed_prompt(task: dict[str, Any]) -> str:
    """The user turn of a task: the instruction, then its input when there is one."""
    instruction = str(task.get("instruction") or "").strip()
    extra = str(task.get("input") or "").strip()
    return f"{instruction}\n\n{extra}" if extra else instruction


def load_seed_tasks(path: str | Path = SEED_FILE) -> list[dict[str, Any]]:
    """Valid seed tasks of a JSONL file (for demonstrations); malformed lines are skipped here
    and reported by the ``seed_tasks`` builder when it reads the same file."""
    tasks = []
    for item in io.iter_jsonl(Path(path)):
        if isinstance(item, Quarantine):
            continue
        _, rec = item
        if _task_error(rec) is None:
            tasks.append(rec)
    return tasks


def _task_error(rec: dict[str, Any]) -> str | None:
    for field in ("instruction", "output"):
        if not isinstance(rec.get(field), str) or not rec[field].strip():
            return f"field '{field}' is missing or not a non-empty string"
    if rec.get("input") is not None and not isinstance(rec["input"], str):
        return "field 'input' must be a string"
    return None


class SeedTasksParams(StepParams):
    path: InputPath | None = Field(default=None, description="seed-task JSONL; default: the shipped clinician seeds")
    source: str = "seed_tasks"
    licence: str | None = None


@register
class SeedTasks(Builder):
    name = "seed_tasks"
    description = "Seed tasks (instruction, input, output) from JSONL; default: meddata's 36 clinician-style seeds."
    Params = SeedTasksParams
    output_columns = ("messages",)

    def input_paths(self, ctx: StepContext) -> list[Path]:
        return [Path(self.params.path) if self.params.path else SEED_FILE]

    def read(self, ctx: StepContext) -> Iterator[dict | Drop | Quarantine]:
        p: SeedTasksParams = self.params
        path = Path(p.path) if p.path else SEED_FILE
        file = ctx.display_path(path)
        licence = p.licence or ("CC0-1.0 (meddata seed tasks)" if p.path is None else None)
        for item in io.iter_jsonl(path):
            if isinstance(item, Quarantine):
                yield Quarantine(item.error, file, item.locator)
                continue
            locator, rec = item
            error = _task_error(rec)
            if error:
                yield Quarantine(error, file, locator)
                continue
            labels = {k: rec[k] for k in SEED_LABELS if rec.get(k) is not None}
            meta = new_meta(builder=self.name, file=file, locator=locator, licence=licence,
                            annotations={"seed": labels} if labels else None)
            yield new_row(source=p.source, meta=meta,
                          messages=messages(("user", seed_prompt(rec)), ("assistant", rec["output"].strip())))


class SelfInstructParams(ScopedParams):
    temperature: float = Field(default=0.7, ge=0, le=2)
    max_tokens: int = Field(default=2048, ge=1)
    seeds: InputPath | None = Field(default=None, description="demonstration pool (JSONL); default: shipped seeds")
    tasks_per_request: int = Field(default=4, ge=1, le=20)
    requests_per_row: int = Field(default=1, ge=1, le=50, description="requests per seed row, each with other demos")
    demos: int = Field(default=3, ge=1, le=10, description="examples shown per request (the row + others)")
    max_similarity: float = Field(default=0.7, gt=0, le=1, description="ROUGE-L at or above this is not novel")
    keep_source: bool = Field(default=False, description="also keep the seed row itself")


@register
class SelfInstruct(LLMGenerator):
    name = "self_instruct"
    description = "LLM: new medical tasks (instruction, input, answer) from seed tasks, kept only when ROUGE-L-novel."
    Params = SelfInstructParams
    template_file = "self_instruct.jinja"
    input_columns = ("messages",)
    output_columns = ("messages",)
    worker_state = (*LLMGenerator.worker_state, "_seeds", "_pool")

    def setup(self, ctx: StepContext) -> None:
        super().setup(ctx)
        p: SelfInstructParams = self.params
        self._seeds = load_seed_tasks(p.seeds or SEED_FILE)
        self._pool = NoveltyPool(p.max_similarity)
        for task in self._seeds:
            self._pool.add(task["instruction"])

    def applies_to(self, row: dict) -> bool:
        return in_scope(self.params, row) and single_turn(row) is not None

    def prepare(self, row: dict) -> dict[str, Any]:
        _, user, assistant = single_turn(row)  # type: ignore[misc]
        instruction, _, extra = user.partition("\n\n")
        task = {"instruction": instruction, "input": extra, "output": assistant}
        # demos/n render the default prompt; requests() renders one per round with other seeds
        return {"task": task, "demos": [task], "n": self.params.tasks_per_request}

    def schema(self, row: dict, variables: dict[str, Any]) -> dict:
        task = {"type": "object",
                "properties": {"instruction": {"type": "string", "minLength": 10}, "input": {"type": "string"},
                               "output": {"type": "string", "minLength": 2}},
                "required": ["instruction", "input", "output"]}
        n = self.params.tasks_per_request
        return {"type": "object", "properties": {"tasks": {"type": "array", "items": task, "minItems": 1,
                                                           "maxItems": n}}, "required": ["tasks"]}

    def requests(self, row: dict, messages: list[dict], variables: dict[str, Any]) -> list[ChatRequest]:
        """One request per round, each showing the row's task with different other seeds."""
        p: SelfInstructParams = self.params
        own = variables["task"]
        others = [t for t in self._seeds if t["instruction"].strip() != own["instruction"].strip()]
        out = []
        for r in range(p.requests_per_row):
            rng = random.Random(f"{p.seed}\x1f{row['id']}\x1f{r}")
            demos = [own, *rng.sample(others, min(p.demos - 1, len(others)))]
            rendered = self.prompt.render({"demos": demos, "n": p.tasks_per_request})
            out.append(self.request(row, rendered, self.schema(row, variables), seed=(p.seed or 0) + r))
        return out

    def process_batch(self, rows: list[dict], ctx: StepContext) -> list[Outcome]:
        # The batch's own instructions join the pool first: a new task must differ from them too.
        for row in rows:
            if self.applies_to(row):
                self._pool.add(single_turn(row)[1].partition("\n\n")[0])  # type: ignore[index]
        return super().process_batch(rows, ctx)

    def build(self, row: dict, responses: list[ChatResponse], variables: dict[str, Any]) -> Outcome:
        p: SelfInstructParams = self.params
        made = []
        for resp in responses:
            for task in resp.parsed["tasks"][: p.tasks_per_request]:
                instruction = str(task["instruction"]).strip()
                output = str(task["output"]).strip()
                problem = self._problem(instruction, output)
                if problem is None:
                    novel, _ = self._pool.add_if_novel(instruction)
                    problem = None if novel else "not_novel"
                if problem is not None:
                    self.stat_update(f"self_instruct.rejected.{problem}")
                    continue
                new = self.derived_row(row, len(made), resp.model,
                                       messages=messages(("user", seed_prompt(task)), ("assistant", output)))
                made.append(new)
        self.stat_update("self_instruct.tasks", len(made))
        if not made:
            return [row] if p.keep_source else Drop(row, "no_novel_instructions")
        return [row, *made] if p.keep_source else made

    @staticmethod
    def _problem(instruction: str, output: str) -> str | None:
        words = len(instruction.split())
        if words < MIN_WORDS or words > MAX_WORDS:
            return "length"
        if _UNDOABLE.search(instruction):
            return "needs_non_text"
        if not output:
            return "empty_output"
        if not instruction[0].isalnum():
            return "malformed"
        return None
