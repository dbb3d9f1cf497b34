"""What a backend does: turn one ChatRequest into one Completion, or raise a classified error.

Backends know nothing of caching, retries, rate limits or the PHI guard; the client
(:mod:`meddata.llm.client`) owns those, so every backend gets them for free.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from meddata.llm.types import ChatRequest
from meddata.registry import Registry


@dataclass
class Completion:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model: str = ""
    finish_reason: str | None = None


class BackendError(Exception):
    """A request failed. ``reason`` is short and never quotes prompt content; ``detail`` is
    the server's own message, which might echo the prompt, so the client shows it only for
    requests built from non-PHI rows."""

    def __init__(self, reason: str, detail: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


class TransientError(BackendError):
    """Worth retrying: 429, 5xx, timeouts, connection errors, broken response bodies."""

    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.retry_after = retry_after


class PermanentError(BackendError):
    """Retrying cannot help: 400, 401, 404, a model that cannot be loaded."""


class Backend(ABC):
    #: Name used in the cache key (``openai``, ``transformers``).
    name: str = ""

    def __init__(self, model: str):
        self.model = model

    @property
    @abstractmethod
    def is_local(self) -> bool:
        """True when requests never leave this machine (the PHI guard's question)."""

    @property
    def endpoint(self) -> str:
        return self.model

    @abstractmethod
    async def complete(self, request: ChatRequest, *, timeout: float) -> Completion:
        """Answer one request, or raise TransientError / PermanentError."""

    async def aclose(self) -> None:
        """Release connections or models (called on the client's event loop)."""


#: Backends by name (``backend:`` of an ``llms`` entry), each constructed as ``cls(name, config)``.
#: Third-party ones through the ``meddata.llm_backends`` entry-point group.
BACKENDS: Registry[type[Backend]] = Registry("LLM backend", "meddata.llm_backends")
BACKENDS.register_lazy("openai", "meddata.llm.backends.openai_backend:OpenAIBackend", requires=("openai",))
BACKENDS.register_lazy("transformers", "meddata.llm.backends.transformers_backend:TransformersBackend",
                       requires=("torch", "transformers"))
