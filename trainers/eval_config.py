"""Evaluation configs: which models, which benchmarks, how to score them.

YAML (``meddata eval CONFIG.yaml``) or flags (``meddata eval --model base=... --bench
medqa=...``) build the same :class:`EvalConfig`. Paths resolve against the config's folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from meddata import exams
from meddata.errors import UserError
from meddata.params import format_validation, unknown_keys
from meddata.yamlfile import read_yaml

Mode = Literal["loglik", "generate"]
#: Benchmark names that imply an exam format.
KNOWN_FORMATS = {"medqa": "medqa", "medqa-usmle": "medqa", "medmcqa": "medmcqa", "pubmedqa": "pubmedqa",
                 "mmlu": "mmlu", "mmlu-medical": "mmlu"}


class EvalConfigError(UserError, ValueError):
    """The eval config is invalid; the message names the file and field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())


class BenchmarkSpec(_Strict):
    """One benchmark: an exam file/folder read through ``meddata.exams``, or (task freetext)
    an exam file with long answers or a dataset of messages / prompt+completion rows."""

    name: str
    path: str
    #: medqa, medmcqa, pubmedqa, mmlu; default from the name, else detected from the file.
    format: str | None = None
    task: Literal["mcq", "freetext"] = "mcq"
    shots: int = Field(default=0, ge=0, le=25)
    #: Solved examples for k-shot prompts (e.g. MMLU dev); default: the first k items,
    #: which are then not scored.
    shots_path: str | None = None
    limit: int | None = Field(default=None, ge=1)
    #: MedMCQA's cop numbering (1: original release, 0: Hugging Face export).
    cop_base: Literal[0, 1] = 1
    #: Split of a dataset used for freetext (meddata build folders, saved datasets).
    split: str = "test"

    @property
    def exam_format(self) -> str | None:
        return self.format or KNOWN_FORMATS.get(self.name.lower())


class JudgeSpec(_Strict):
    """The LLM judge (through meddata.llm): rubric grades 1-10 or pairwise preference."""

    llm: dict[str, Any]
    mode: Literal["rubric", "pairwise"] = "rubric"
    max_items: int | None = Field(default=50, ge=1)


class EvalConfig(_Strict):
    #: name -> model folder (full weights or a LoRA adapter). The first is the baseline.
    models: dict[str, str] = Field(min_length=1)
    benchmarks: list[BenchmarkSpec] = Field(min_length=1)
    modes: list[Mode] = Field(default_factory=lambda: ["loglik"])
    #: Wrap prompts in a chat template: auto = when a model has one, and then for every model
    #: (see chat_template_from), so base and tuned are scored in the same format.
    chat: Literal["auto", "always", "never"] = "auto"
    #: Score every model with this model's chat template (auto sets it to the first model that
    #: has one when others, typically the base, have none).
    chat_template_from: str | None = None
    #: MCQ prompts: instruction = the prompt meddata trains with (meddata.exams: mcq_instruction,
    #: exam as: instruction); completion = "Question: ...\nA. ...\nAnswer:" (lm-eval style).
    prompt: Literal["instruction", "completion"] = "instruction"
    #: The training set (a meddata build folder, its stats.json or its README.md card): use the
    #: templates its exam instructions were built with.
    prompt_from: str | None = None
    #: Instruction templates ({question}, {options}, {context}); default meddata.exams' own.
    mcq_template: str | None = None
    yes_no_maybe_template: str | None = None
    #: A system turn before each question (default: none, or the training set's).
    system_prompt: str | None = None
    #: loglik continuations: the option label (" C", lm-eval MMLU style) or the option text.
    continuation: Literal["label", "text"] = "label"
    max_new_tokens: int = Field(default=32, ge=1)
    freetext_max_new_tokens: int = Field(default=128, ge=1)
    batch_size: int = Field(default=8, ge=1)
    max_length: int | None = Field(default=None, ge=16)
    judge: JudgeSpec | None = None
    seed: int = 0
    out: str | None = None

    @model_validator(mode="after")
    def _check(self) -> EvalConfig:
        names = [b.name for b in self.benchmarks]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"benchmark names must be unique; repeated: {sorted(dup)}")
        if self.chat_template_from is not None and self.chat_template_from not in self.models:
            raise ValueError(f"chat_template_from: {self.chat_template_from!r} is not one of the models "
                             f"({', '.join(self.models)})")
        if self.chat_template_from is not None and self.chat == "never":
            raise ValueError("chat_template_from needs chat: auto or always")
        for name in ("mcq_template", "yes_no_maybe_template"):
            if getattr(self, name) is not None:
                exams.check_template(getattr(self, name), name)
        return self

    def templates(self) -> exams.PromptTemplates:
        """The instruction templates to score with (after :func:`with_training_prompt`)."""
        return exams.PromptTemplates(mcq=self.mcq_template or exams.MCQ_TEMPLATE,
                                     yes_no_maybe=self.yes_no_maybe_template or exams.YES_NO_MAYBE_TEMPLATE,
                                     system=self.system_prompt)


def with_training_prompt(cfg: EvalConfig, base_dir: Path) -> EvalConfig:
    """``cfg`` with the templates of its ``prompt_from`` training set filled in (explicit
    mcq_template / yes_no_maybe_template / system_prompt win), so the report shows the exact
    prompt scored."""
    if cfg.prompt_from is None:
        return cfg
    from meddata.publish.buildinfo import BuildError, BuildInfo

    path = Path(cfg.prompt_from).expanduser()
    path = path if path.is_absolute() else base_dir / path
    root = path.parent if path.is_file() else path  # stats.json or README.md -> the build folder
    try:
        found = BuildInfo(root).exam_prompt_templates()
    except BuildError as exc:
        raise EvalConfigError(f"prompt_from: {exc}") from None
    if found is None:
        raise EvalConfigError(f"prompt_from: {root} has no exam instructions (no mcq_instruction step and no "
                              "exam input with as: instruction); drop prompt_from to use meddata's default prompt")
    return cfg.model_copy(update={
        "mcq_template": cfg.mcq_template or found.mcq,
        "yes_no_maybe_template": cfg.yes_no_maybe_template or found.yes_no_maybe,
        "system_prompt": cfg.system_prompt if cfg.system_prompt is not None else found.system,
    })


def from_dict(data: Any, *, source: str = "<eval config>", base_dir: Path | None = None) -> tuple[EvalConfig, Path]:
    if not isinstance(data, dict):
        raise EvalConfigError(f"{source}: an eval config must be a mapping, got {type(data).__name__}")
    unknown = unknown_keys(data, EvalConfig, source, "field")
    if unknown:
        raise EvalConfigError(unknown)
    try:
        cfg = EvalConfig.model_validate(data)
    except ValidationError as exc:
        raise EvalConfigError(format_validation(exc, source, "field")) from None
    return cfg, base_dir or Path.cwd()


def load(path: str | Path) -> tuple[EvalConfig, Path]:
    path = Path(path)
    data = read_yaml(path, EvalConfigError, "eval config")
    if isinstance(data, dict) and "eval" in data and "models" not in data:
        data = data["eval"]
    return from_dict(data, source=str(path), base_dir=path.parent.resolve())
