"""Request and response types of the LLM client: the seam generators and judges code against.

They are plain dataclasses (picklable, no SDK types), so a step never depends on which
backend answered. Add fields freely; never rename one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: ``meta.phi_status`` values that may be sent to any endpoint and stored in the cache.
SAFE_PHI_STATUSES = ("deidentified", "not_applicable")


@dataclass
class ChatRequest:
    """One chat completion to make.

    ``phi_status`` is the status of the rows the prompt was built from; the PHI guard refuses
    anything but ``deidentified``/``not_applicable`` for endpoints off this machine. It
    defaults to ``raw``, so a request that does not say is never sent off the machine.
    ``key`` is the caller's id for log lines (a row id); it is not part of the cache key.
    Requests that must give different answers (k samples of one prompt) must differ in
    ``seed``: identical requests share one cache entry and one call.
    """

    messages: list[dict]
    temperature: float = 0.0
    max_tokens: int = 512
    seed: int | None = None
    #: Structured output: the answer must be JSON valid against this schema (one repair retry).
    json_schema: dict | None = None
    #: The answer must be a JSON value (any shape); implied by ``json_schema``.
    json_mode: bool = False
    #: Unknown means unsafe: a caller that forgets to say is treated as sending raw PHI.
    phi_status: str = "raw"
    key: str | None = None

    @property
    def wants_json(self) -> bool:
        return self.json_mode or self.json_schema is not None


@dataclass
class ChatResponse:
    """The outcome of one request. ``error is None`` means success.

    On failure ``error`` says why (never a bare None). For output that failed JSON
    validation ``text`` still holds the model's last raw answer, so the caller can put it
    in a quarantine entry when the source rows allow it.
    """

    text: str | None
    parsed: Any | None
    error: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False
    model: str = ""
    #: Transport retries this request needed (429, 5xx, timeouts, broken bodies).
    retries: int = 0
    #: Estimated cost from the LLM's ``prices`` (0 when cached or no prices are set).
    cost: float = 0.0
    #: True when ``error`` is about the answer's content (invalid JSON / schema), not transport.
    invalid_output: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None


def usage_counters(responses: list[ChatResponse], prefix: str = "llm.") -> dict[str, float]:
    """Counters for ``Step.stat_update`` from one batch of responses.

    Tokens and cost count only requests actually sent in this run (cache hits are free and
    counted under ``cached``), so stats.json shows what the run spent.
    """
    sent = [r for r in responses if not r.cached]
    counters = {
        "requests": len(responses),
        "cached": len(responses) - len(sent),
        "errors": sum(1 for r in responses if r.error is not None),
        "invalid_output": sum(1 for r in responses if r.invalid_output),
        "retries": sum(r.retries for r in sent),
        "prompt_tokens": sum(r.prompt_tokens for r in sent),
        "completion_tokens": sum(r.completion_tokens for r in sent),
        "cost": round(sum(r.cost for r in sent), 6),
    }
    return {prefix + k: v for k, v in counters.items() if v}
