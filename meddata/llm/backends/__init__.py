"""LLM backends. Heavy libraries (openai, torch, transformers) are imported on construction."""

from __future__ import annotations

from meddata.llm.backends.base import (
    BACKENDS,
    Backend,
    BackendError,
    Completion,
    PermanentError,
    TransientError,
)
from meddata.llm.config import LLMConfig


def make_backend(name: str, config: LLMConfig) -> Backend:
    """Construct the backend of ``config``; opens no connection and loads no model yet."""
    return BACKENDS.get(config.backend)(name, config)


__all__ = ["BACKENDS", "Backend", "BackendError", "Completion", "PermanentError", "TransientError", "make_backend"]
