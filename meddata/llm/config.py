"""The ``llms:`` section of a recipe: one validated :class:`LLMConfig` per named LLM.

Validation happens when a step first asks for the client (``ctx.llm(name)``) and can be run
up front with :func:`validate_llm_configs`. Errors name the LLM and the key, e.g.
``llms.local: key 'max_concurrency': Input should be greater than or equal to 1``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from meddata.llm.errors import LLMConfigError
from meddata.params import error_message, unknown_keys

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"


class Prices(BaseModel):
    """Prices per 1,000 tokens, in whatever currency the recipe's author uses."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    input_per_1k: float = Field(default=0.0, ge=0)
    output_per_1k: float = Field(default=0.0, ge=0)

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return prompt_tokens / 1000 * self.input_per_1k + completion_tokens / 1000 * self.output_per_1k


class LLMConfig(BaseModel):
    """One LLM of a recipe. ``base_url`` and ``model`` may reference environment variables as
    ``${NAME}`` or ``${NAME:-default}`` so one recipe runs against vLLM, Ollama or OpenAI."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: A registered LLM backend (``meddata.llm.backends.BACKENDS``: openai, transformers, or
    #: one a package adds through the ``meddata.llm_backends`` entry-point group).
    backend: str = "openai"
    model: str | None = None
    base_url: str | None = None
    #: Name of the environment variable holding the API key (the key itself never appears
    #: in a recipe, a log line or the cache). Unset: no key (local servers need none).
    api_key_env: str | None = None
    #: Requests in flight at once, per process (``num_proc`` worker processes each get a client).
    max_concurrency: int = Field(default=16, ge=1, le=4096)
    #: Seconds one attempt may take, end to end.
    timeout: float = Field(default=120.0, gt=0)
    max_retries: int = Field(default=5, ge=0, le=50)
    #: First backoff delay in seconds; doubles per retry (with jitter) up to ``backoff_max``.
    backoff_base: float = Field(default=1.0, ge=0)
    backoff_max: float = Field(default=60.0, ge=0)
    rpm: int | None = Field(default=None, ge=1)
    tpm: int | None = Field(default=None, ge=1)
    #: Forces the sampling temperature of every request to this LLM (unset: each step chooses).
    temperature: float | None = Field(default=None, ge=0, le=2)
    prices: Prices | None = None
    allow_phi_to_remote: bool = False
    #: sqlite cache file (relative: to the recipe folder); false disables the cache.
    cache: str | bool | None = None
    #: Also cache requests built from raw-PHI rows (only ever sent to a local endpoint).
    cache_raw: bool = False
    #: How structured output is asked for: ``auto`` sends ``response_format`` (json_schema or
    #: json_object); ``none`` relies on the prompt alone (servers that reject the field). For the
    #: transformers backend, anything but ``none`` means schema-constrained decoding.
    response_format: Literal["auto", "json_schema", "json_object", "none"] = "auto"
    # transformers backend
    model_path: str | None = None
    device: str = "auto"
    batch_size: int = Field(default=8, ge=1)
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, name: str) -> str:
        from meddata.llm.backends.base import BACKENDS

        if name not in BACKENDS:
            raise ValueError(BACKENDS.unknown_message(name))
        return name

    @model_validator(mode="after")
    def _backend_keys(self) -> LLMConfig:
        if self.backend == "openai" and not self.model:
            raise ValueError("backend 'openai' needs 'model' (the model name the server serves)")
        if self.backend == "transformers" and not self.model_path:
            raise ValueError("backend 'transformers' needs 'model_path' (a local model folder, a .gguf file "
                             "or a short name from 'meddata models list')")
        return self

    # -- derived values ------------------------------------------------------------------------
    @property
    def effective_base_url(self) -> str:
        """The URL requests go to, with ``${VAR}`` expanded (never read from OPENAI_BASE_URL
        implicitly: the PHI guard must judge the exact endpoint that will be used)."""
        return expand_env(self.base_url) if self.base_url else OPENAI_DEFAULT_BASE_URL

    @property
    def effective_model(self) -> str:
        if self.model:
            return expand_env(self.model)
        return str(self.model_path)


def expand_env(value: str) -> str:
    """Expand ``${NAME}`` and ``${NAME:-default}``; an unset variable without default is an error."""

    def sub(m: re.Match) -> str:
        name, default = m.group(1), m.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise LLMConfigError(f"environment variable {name} is not set (referenced as ${{{name}}})")

    return _ENV_REF.sub(sub, value)


def parse_config(name: str, raw: Mapping[str, Any] | LLMConfig) -> LLMConfig:
    """Validate one ``llms`` entry; errors name ``llms.<name>`` and the key."""
    if isinstance(raw, LLMConfig):
        return raw
    if not isinstance(raw, Mapping):
        raise LLMConfigError(f"llms.{name}: expected a mapping of settings, got {type(raw).__name__}")
    unknown = unknown_keys(raw, LLMConfig, f"llms.{name}", "key")
    if unknown:
        raise LLMConfigError(unknown)
    try:
        return LLMConfig.model_validate(dict(raw))
    except ValidationError as exc:
        lines = []
        for e in exc.errors(include_url=False, include_input=False):
            key = ".".join(str(p) for p in e["loc"])
            where = f"key '{key}'" if key else "settings"
            lines.append(f"llms.{name}: {where}: {error_message(e)}")
        raise LLMConfigError("\n".join(lines)) from None


def validate_llm_configs(llms: Mapping[str, Any]) -> dict[str, LLMConfig]:
    """Validate a whole ``llms`` section (for recipe loading or ``meddata validate``)."""
    return {name: parse_config(name, raw) for name, raw in llms.items()}


def default_cache_path() -> Path:
    """``$MEDDATA_CACHE_DIR/llm.sqlite``, else ``<cwd>/.meddata_cache/llm.sqlite``."""
    root = os.environ.get("MEDDATA_CACHE_DIR")
    return (Path(root) if root else Path.cwd() / ".meddata_cache") / "llm.sqlite"
