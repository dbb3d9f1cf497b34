"""LLM backends. Heavy libraries (openai, torch, transformers) are imported on construction."""

from __future__ import annotations

from meddata.llm.backends.base import Backend, BackendError, Completion, PermanentError, TransientError
from meddata.llm.config import LLMConfig


def make_backend(name: str, config: LLMConfig) -> Backend:
    """Construct the backend of ``config``; opens no connection and loads no model yet."""
    if config.backend == "openai":
        from meddata.llm.backends.openai_backend import OpenAIBackend

        return OpenAIBackend(name, config)
    from meddata.llm.backends.transformers_backend import TransformersBackend

    return TransformersBackend(name, config)


__all__ = ["Backend", "BackendError", "Completion", "PermanentError", "TransientError", "make_backend"]
