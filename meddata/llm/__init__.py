"""LLM client: one interface for OpenAI-compatible and local transformers backends.

Steps get a client with ``ctx.llm(name)`` (the recipe's ``llms`` section) and call
``client.generate([ChatRequest(...), ...])``; concurrency, retries, rate limits, the request
cache, token/cost accounting and the PHI guard all live behind that one call.
Heavy libraries (openai, torch, transformers) load only when a backend is built.
"""

from meddata.llm.client import LLMClient, client_for, close_all
from meddata.llm.config import LLMConfig, validate_llm_configs
from meddata.llm.errors import LLMConfigError, PHIGuardError
from meddata.llm.guard import is_local_endpoint
from meddata.llm.types import ChatRequest, ChatResponse, usage_counters

__all__ = [
    "ChatRequest", "ChatResponse", "LLMClient", "LLMConfig", "LLMConfigError", "PHIGuardError",
    "client_for", "close_all", "is_local_endpoint", "usage_counters", "validate_llm_configs",
]
