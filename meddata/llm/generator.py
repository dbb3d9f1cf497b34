"""Base class for LLM generators: template -> requests for a whole batch -> rows.

A generator subclass says only what is specific to it: the template variables of a row
(:meth:`LLMGenerator.prepare`), the JSON schema of the answer (:meth:`LLMGenerator.schema`)
and how a good answer becomes rows (:meth:`LLMGenerator.build`). The base renders the
template, sends the batch through ``ctx.llm(params.llm)`` (cache, retries, PHI guard,
accounting live there), reports token usage into stats.json and turns every failed answer
into a quarantine entry with its reason: no row is ever dropped silently.

New rows inherit ``meta`` from their source row (``phi_status``, patient and encounter ids,
licence, file and locator) and record ``generator_model``, ``prompt_id`` and
``annotations.generated_from``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from meddata.llm.guard import is_safe_status
from meddata.llm.prompting import PromptTemplate, TemplateError
from meddata.llm.types import ChatRequest, ChatResponse, usage_counters
from meddata.params import InputPath
from meddata.records import CONTENT_COLUMNS, annotate, make_id
from meddata.steps import Drop, Mapper, Outcome, Quarantine, StepContext, StepParams

#: Longest piece of raw model output copied into a quarantine entry.
RAW_OUTPUT_CHARS = 2000


class GeneratorParams(StepParams):
    llm: str = Field(description="name of an LLM in the recipe's 'llms' section")
    #: A Jinja file replacing the shipped template (same variables, 'system' and 'user' blocks).
    template: InputPath | None = None
    #: Rows this generator does not apply to (e.g. exam items for passage_qa): pass them
    #: through unchanged, or drop them with reason ``other_row_type``.
    other_rows: Literal["keep", "drop"] = "keep"
    temperature: float = Field(default=0.0, ge=0, le=2)
    max_tokens: int = Field(default=1024, ge=1)
    seed: int | None = None
    #: Rows per batch sent together (default 256); keep it above the LLM's max_concurrency.
    batch_size: int | None = Field(default=None, ge=1)

    @field_validator("template")
    @classmethod
    def _compiles(cls, v: str | None) -> str | None:
        return check_template(v)


def check_template(path: str | None) -> str | None:
    """Validator body for template parameters: a replacement template must compile when the
    recipe loads, so a broken file is a recipe error instead of a failure mid-run."""
    if path is not None:
        try:
            PromptTemplate.load(path)
        except TemplateError as exc:
            raise ValueError(str(exc)) from None
    return path


class LLMStepState:
    """Worker state every LLM step shares (mixed into a Mapper or Filter): the prompt template,
    compiled once per worker, and the LLM client, closed by :meth:`teardown`. Subclasses
    implement :meth:`_load_prompt`; their params name the LLM in ``llm``."""

    worker_state: ClassVar[tuple[str, ...]] = ("_prompt", "_client")

    def _load_prompt(self) -> PromptTemplate:
        raise NotImplementedError

    def setup(self, ctx: StepContext) -> None:
        self._prompt = self._load_prompt()

    @property
    def prompt(self) -> PromptTemplate:
        """The template in use (compiled once per process; kept out of pickles)."""
        if self.__dict__.get("_prompt") is None:
            self._prompt = self._load_prompt()
        return self._prompt

    def client(self, ctx: StepContext, name: str | None = None):
        """The client of LLM ``name`` (default ``params.llm``) for this worker; closed by teardown."""
        clients = self.__dict__.setdefault("_client", {})
        name = name or self.params.llm
        client = clients.get(name)
        if client is None or client.closed:
            client = clients[name] = ctx.llm(name)
        return client

    def teardown(self) -> None:
        for client in (self.__dict__.get("_client") or {}).values():
            client.close()
        super().teardown()


class LLMGenerator(LLMStepState, Mapper):
    """Mapper base for steps that ask an LLM to write new rows. Subclasses set ``name``,
    ``description``, ``template_file`` and implement ``prepare`` and ``build``."""

    Params: ClassVar[type[StepParams]] = GeneratorParams
    creates_rows: ClassVar[bool] = True
    #: Rows per batch: enough requests in flight to fill a server's concurrency.
    batch_size: ClassVar[int] = 256
    #: Shipped template file (format: see :mod:`meddata.llm.prompting`), in ``template_dir``.
    template_file: ClassVar[str] = ""
    #: Folder of ``template_file``; default: ``templates/`` next to the subclass's module.
    template_dir: ClassVar[Path | None] = None

    def __init__(self, params: StepParams | Mapping[str, Any] | None = None, **kwargs: Any):
        super().__init__(params, **kwargs)
        if getattr(self.params, "batch_size", None):
            self.batch_size = self.params.batch_size

    # -- what subclasses implement -----------------------------------------------------------------
    def applies_to(self, row: dict) -> bool:
        """Whether this generator handles ``row`` at all (others follow ``params.other_rows``)."""
        return True

    def prepare(self, row: dict) -> dict[str, Any] | Drop | Quarantine:
        """Template variables for ``row``, or Drop/Quarantine when the row cannot be used."""
        raise NotImplementedError

    def schema(self, row: dict, variables: dict[str, Any]) -> dict | None:
        """JSON schema the answer must match (None: free text)."""
        return None

    def requests(self, row: dict, messages: list[dict], variables: dict[str, Any]) -> list[ChatRequest]:
        """The requests for one row; one by default. Override for k samples (vary ``seed``)."""
        return [self.request(row, messages, self.schema(row, variables))]

    def build(self, row: dict, responses: list[ChatResponse], variables: dict[str, Any]) -> Outcome:
        """Rows (or Drop/Quarantine) from the successful answers of one row."""
        raise NotImplementedError

    # -- the machinery --------------------------------------------------------------------------------
    def _load_prompt(self) -> PromptTemplate:
        path = getattr(self.params, "template", None)
        if path:
            return PromptTemplate.load(path)
        folder = self.template_dir or Path(sys.modules[type(self).__module__].__file__).parent / "templates"
        return PromptTemplate.shipped(self.template_file, folder)

    def fingerprint_extra(self, ctx: StepContext) -> str:
        """The template's content and the LLM settings that change answers, so editing either
        re-runs the step (unchanged requests are still answered from the LLM cache)."""
        from meddata.llm.config import parse_config

        cfg = parse_config(self.params.llm, ctx.llm_configs.get(self.params.llm) or {"model": "?"})
        template = hashlib.sha256(self.prompt.source.encode()).hexdigest()[:16]
        return json.dumps([template, cfg.backend, cfg.effective_model, cfg.temperature, cfg.response_format])

    def request(self, row: dict, messages: list[dict], json_schema: dict | None = None, **overrides: Any) -> ChatRequest:
        """A request carrying the row's PHI status (for the guard) and id (for logs)."""
        p = self.params
        fields = {"temperature": p.temperature, "max_tokens": p.max_tokens, "seed": p.seed, **overrides}
        return ChatRequest(messages=messages, json_schema=json_schema, phi_status=phi_status_of(row),
                           key=row.get("id"), **fields)

    def process_batch(self, rows: list[dict], ctx: StepContext) -> list[Outcome]:
        plans: list[tuple[Outcome | None, dict[str, Any] | None, list[ChatRequest]]] = []
        for row in rows:
            if not self.applies_to(row):
                self.stat_update(f"{self.name}.other_rows")
                plans.append((row if self.params.other_rows == "keep" else Drop(row, "other_row_type"), None, []))
                continue
            variables = self.prepare(row)
            if isinstance(variables, (Drop, Quarantine)):
                plans.append((variables, None, []))
                continue
            messages = self.prompt.render(variables)
            plans.append((None, variables, self.requests(row, messages, variables)))
        flat = [r for _, _, reqs in plans for r in reqs]
        responses = self.client(ctx).generate(flat) if flat else []
        for key, value in usage_counters(responses).items():
            self.stat_update(key, value)
        outcomes: list[Outcome] = []
        pos = 0
        for row, (early, variables, reqs) in zip(rows, plans):
            if early is not None:
                outcomes.append(early)
                continue
            answers = responses[pos : pos + len(reqs)]
            pos += len(reqs)
            failed = next((r for r in answers if r.error is not None), None)
            if failed is not None:
                outcomes.append(self.quarantine(row, failed))
            else:
                outcomes.append(self.build(row, answers, variables or {}))
        return outcomes

    def quarantine(self, row: dict, response: ChatResponse, reason: str | None = None) -> Quarantine:
        """Quarantine ``row`` for an unusable answer. The raw answer goes into the entry only when
        the source row holds no raw PHI (the quarantine file is not a PHI store)."""
        error = f"{self.name}: unusable LLM answer: {reason or response.error}{raw_output_note(row, response)}"
        return Quarantine(error=error, row=row, service=None if response.invalid_output else f"llms.{self.params.llm}")

    def derived_row(self, row: Mapping[str, Any], index: int, model: str, **content: Any) -> dict:
        """A new row made from ``row``: content columns replaced, meta inherited, provenance set."""
        new = {**row, **{c: None for c in CONTENT_COLUMNS}, **content}
        meta = copy.deepcopy(dict(row["meta"]))
        meta.update(generator_model=model, prompt_id=self.prompt.prompt_id, annotations="{}")
        new["meta"] = meta
        new["id"] = make_id(str(row["id"]), f"{self.name}:{self.prompt.prompt_id}:{index}")
        return annotate(new, "generated_from", row["id"])

    def mark_generated(self, row: dict, model: str) -> dict:
        """Record generator model and prompt id on a row the step keeps (1 -> 1 generators)."""
        row["meta"] = {**row["meta"], "generator_model": model, "prompt_id": self.prompt.prompt_id}
        return row


def raw_output_note(row: Mapping[str, Any], response: ChatResponse) -> str:
    """What a quarantine entry may say of an unusable answer: the raw output (first
    RAW_OUTPUT_CHARS, as JSON) when the source row holds no raw PHI, else that it was
    withheld (the quarantine file is not a PHI store); nothing for an empty answer."""
    if not response.text:
        return ""
    if is_safe_status(phi_status_of(row)):
        return f"; raw output: {json.dumps(response.text[:RAW_OUTPUT_CHARS], ensure_ascii=False)}"
    return "; raw output withheld (the source row holds raw PHI)"


def phi_status_of(row: Mapping[str, Any]) -> str:
    """The row's ``meta.phi_status``; a row without one counts as raw (fail closed)."""
    return str((row.get("meta") or {}).get("phi_status") or "raw")
