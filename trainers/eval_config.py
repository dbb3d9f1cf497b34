"""Evaluation configs: which models, which benchmarks, how to score them.

YAML (``meddata eval CONFIG.yaml``) or flags (``meddata eval --model base=... --bench
medqa=...``) build the same :class:`EvalConfig`. Paths resolve against the config's folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from meddata.errors import UserError
from meddata.params import format_validation
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
    #: Wrap prompts in the model's chat template: auto = when the tokenizer has one.
    chat: Literal["auto", "always", "never"] = "auto"
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
        return self


def from_dict(data: Any, *, source: str = "<eval config>", base_dir: Path | None = None) -> tuple[EvalConfig, Path]:
    if not isinstance(data, dict):
        raise EvalConfigError(f"{source}: an eval config must be a mapping, got {type(data).__name__}")
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
