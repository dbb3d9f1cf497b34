"""Recipes: YAML -> a validated plan of step instances.

A recipe never executes code (``yaml.safe_load`` only). Every error names the recipe file,
the section and index, the step and the parameter, and says what was expected.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from meddata import registry
from meddata.errors import MissingDependencyError, RecipeError
from meddata.extras import install_hint, missing
from meddata.params import format_validation, unknown_keys
from meddata.steps import Builder, Step
from meddata.yamlfile import read_yaml

__all__ = ["EngineConfig", "OutputConfig", "Recipe", "RecipeError", "RecipeModel", "build_step", "from_dict",
           "load"]


class OutputConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str | None = None
    formats: list[Literal["arrow", "parquet", "jsonl"]] = Field(default_factory=lambda: ["arrow", "jsonl"])
    #: Extra exports written next to the build: alpaca, sharegpt, trl_standard.
    exports: list[str] = Field(default_factory=list)
    card: bool = True
    #: Keep raw-PHI checkpoints between runs (off: they live in a private folder removed at the end).
    keep_raw_checkpoints: bool = False
    #: Step checkpoints kept after the build: all (resume from any step), last (resume from
    #: the last step; least disk that still reuses a finished build) or none.
    keep_checkpoints: Literal["all", "last", "none"] = "all"
    #: A step that quarantines more than this share of its input fails the build.
    max_quarantine_rate: float = Field(default=0.5, ge=0.0, le=1.0)

    @field_validator("exports")
    @classmethod
    def _known_exports(cls, names: list[str]) -> list[str]:
        from meddata.formats import EXPORTERS

        for name in names:
            if name not in EXPORTERS:
                raise ValueError(EXPORTERS.unknown_message(name))
        return names


class EngineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = "local"
    num_proc: int = Field(default=1, ge=1)
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _known_engine(cls, name: str) -> str:
        from meddata.engine.base import ENGINES

        if name not in ENGINES:
            raise ValueError(ENGINES.unknown_message(name))
        return name


class RecipeModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    seed: int = 0
    llms: dict[str, dict[str, Any]] = Field(default_factory=dict)
    inputs: list[dict[str, Any]] = Field(min_length=1)
    steps: list[Any] = Field(default_factory=list)
    output: OutputConfig = Field(default_factory=OutputConfig)
    engine: EngineConfig = Field(default_factory=EngineConfig)


class Recipe:
    """A validated recipe: builder instances for the inputs, step instances in order."""

    def __init__(
        self,
        name: str,
        inputs: list[Builder],
        steps: list[Step],
        *,
        output: OutputConfig | None = None,
        engine: EngineConfig | None = None,
        llms: Mapping[str, Mapping[str, Any]] | None = None,
        seed: int = 0,
        base_dir: Path | None = None,
        source_file: Path | None = None,
        description: str = "",
    ):
        self.name = name
        self.inputs = inputs
        self.steps = steps
        self.output = output or OutputConfig()
        self.engine = engine or EngineConfig()
        self.llms = dict(llms or {})
        self.seed = seed
        self.base_dir = base_dir or Path.cwd()
        self.source_file = source_file
        self.description = description

    def output_dir(self, override: str | Path | None = None) -> Path:
        if override:
            return Path(override)
        if self.output.path:
            p = Path(self.output.path).expanduser()
            return p if p.is_absolute() else self.base_dir / p
        return Path("out") / self.name


def _step_entry(entry: Any, where: str) -> tuple[str, dict[str, Any]]:
    """``"name"`` or ``{name: {params}}`` or ``{name: null}`` -> (name, params)."""
    if isinstance(entry, str):
        return entry, {}
    if isinstance(entry, Mapping) and len(entry) == 1:
        (name, params), = entry.items()
        if params is None:
            params = {}
        if not isinstance(params, Mapping):
            raise RecipeError(f"{where} {name!r}: parameters must be a mapping, got {type(params).__name__}")
        return str(name), dict(params)
    raise RecipeError(f"{where}: expected a step name or a one-key mapping {{name: {{params}}}}")


def build_step(name: str, params: Mapping[str, Any], where: str, base_dir: Path, *, builder: bool) -> Step:
    """Instantiate a registered step with validated parameters; errors name ``where``."""
    try:
        cls = registry.get(name)
    except registry.UnknownStepError as exc:
        raise RecipeError(f"{where}: {exc}") from None
    if builder and not issubclass(cls, Builder):
        raise RecipeError(f"{where}: {name!r} is a {cls.kind}, not a builder; move it to 'steps'")
    if not builder and issubclass(cls, Builder):
        raise RecipeError(f"{where}: {name!r} is a builder; list it under 'inputs'")
    unknown = unknown_keys(params, cls.Params, f"{where} {name!r}", "parameter")
    if unknown:
        raise RecipeError(unknown)
    try:
        validated = cls.Params.model_validate(dict(params), context={"base_dir": base_dir})
    except ValidationError as exc:
        raise RecipeError(format_validation(exc, f"{where} {name!r}")) from None
    return cls(validated)


def from_dict(data: Mapping[str, Any], *, base_dir: Path | None = None, source: str = "<recipe>") -> Recipe:
    base_dir = base_dir or Path.cwd()
    unknown = "\n".join(filter(None, [
        unknown_keys(data, RecipeModel, source, "field"),
        unknown_keys(data.get("output") if isinstance(data, Mapping) else None, OutputConfig, f"{source}: output",
                     "field"),
        unknown_keys(data.get("engine") if isinstance(data, Mapping) else None, EngineConfig, f"{source}: engine",
                     "field")]))
    if unknown:
        raise RecipeError(unknown)
    try:
        model = RecipeModel.model_validate(data)
    except ValidationError as exc:
        raise RecipeError(format_validation(exc, source).replace("parameter", "field")) from None

    if model.llms:
        from meddata.llm import LLMConfigError, validate_llm_configs

        try:
            validate_llm_configs(model.llms)
        except LLMConfigError as exc:
            raise RecipeError("\n".join(f"{source}: {line}" for line in str(exc).splitlines())) from None

    inputs: list[Builder] = []
    for i, entry in enumerate(model.inputs):
        where = f"{source}: inputs[{i}]"
        if "builder" not in entry:
            raise RecipeError(f"{where}: missing 'builder' (run 'meddata steps --kind builder' to list them)")
        params = {k: v for k, v in entry.items() if k != "builder"}
        inputs.append(build_step(str(entry["builder"]), params, where, base_dir, builder=True))

    steps: list[Step] = []
    for i, entry in enumerate(model.steps):
        where = f"{source}: steps[{i}]"
        name, params = _step_entry(entry, where)
        steps.append(build_step(name, params, where, base_dir, builder=False))
    _check_llm_refs(steps, model.llms, source)
    check_requirements(inputs, steps, model.llms, model.engine.name, source)
    check_input_columns(inputs, steps, source)
    return Recipe(
        model.name,
        inputs,
        steps,
        output=model.output,
        engine=model.engine,
        llms=model.llms,
        seed=model.seed,
        base_dir=base_dir,
        source_file=Path(source) if source != "<recipe>" else None,
        description=model.description,
    )


def _check_llm_refs(steps: list[Step], llms: Mapping[str, Any], source: str) -> None:
    """Every parameter named ``llm`` or ``*_llm`` must name an entry of the ``llms`` section."""
    for i, step in enumerate(steps):
        for param, ref in step.params.model_dump().items():
            if (param == "llm" or param.endswith("_llm")) and isinstance(ref, str) and ref not in llms:
                known = ", ".join(sorted(llms)) or "none defined"
                raise RecipeError(
                    f"{source}: steps[{i}] {step.name!r}: parameter {param!r}: no LLM named {ref!r} "
                    f"in the recipe's 'llms' section ({known})"
                )


def check_requirements(inputs: list[Builder], steps: list[Step], llms: Mapping[str, Any], engine: str,
                       source: str) -> None:
    """Every optional library the recipe's steps, LLM backends and engine need is installed;
    else one line naming the component and the install that fixes it."""
    from meddata.engine.base import ENGINES
    from meddata.llm.backends.base import BACKENDS

    needs: list[tuple[str, tuple[str, ...]]] = [
        *((f"inputs[{i}] {b.name!r}", b.requirements()) for i, b in enumerate(inputs)),
        *((f"steps[{i}] {s.name!r}", s.requirements()) for i, s in enumerate(steps)),
        *((f"llms.{name}", BACKENDS.requirements(str(cfg.get("backend", "openai")))) for name, cfg in llms.items()),
        (f"engine {engine!r}", ENGINES.requirements(engine)),
    ]
    for where, modules in needs:
        absent = missing(modules)
        if absent:
            raise MissingDependencyError(f"{source}: {where}: {install_hint(absent[0])}")


def check_input_columns(inputs: list[Builder], steps: list[Step], source: str) -> None:
    """A step that declares the columns it reads needs one of them from the inputs or an
    earlier step; otherwise no row would reach it (a step in the wrong place, a wrong input).

    Columns are known while every input and every step before declares ``output_columns``
    (filters and global steps add none); after one that does not, nothing is checked."""
    available: set[str] = {"id", "source", "meta"}  # every row has these
    for builder in inputs:
        if not builder.output_columns:
            return
        available.update(builder.output_columns)
    for i, step in enumerate(steps):
        if step.input_columns and not available.intersection(step.input_columns):
            wanted = " or ".join(repr(c) for c in step.input_columns)
            have = ", ".join(sorted(available)) or "none"
            raise RecipeError(f"{source}: steps[{i}] {step.name!r} reads {wanted}, but no input or earlier "
                              f"step produces it (available: {have}); move the step or add an input that does")
        if step.kind in ("filter", "global"):
            continue
        if not step.output_columns:
            return
        available.update(step.output_columns)


def load(path: str | Path) -> Recipe:
    """Load and validate a recipe file."""
    path = Path(path)
    data = read_yaml(path, RecipeError, "recipe")
    if not isinstance(data, Mapping):
        raise RecipeError(f"{path}: a recipe must be a YAML mapping with name, inputs, steps, output")
    return from_dict(data, base_dir=path.parent.resolve(), source=str(path))
