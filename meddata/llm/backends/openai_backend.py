"""OpenAI-protocol backend: the official ``openai.AsyncOpenAI`` client against any base_url
(OpenAI, vLLM, Ollama, TGI, LM Studio, llama.cpp server).

The SDK's own retries are off (``max_retries=0``): the client retries with its own backoff,
so every retry is counted, honours Retry-After and respects the rate limits. Failures are
classified into :class:`TransientError` / :class:`PermanentError` with short reasons that
never quote prompt content.

Two things keep the client's CPU per request down, which is what limits throughput at high
concurrency on a small machine (see benchmarks/llm_throughput.py):

* the connection pool is split over several SDK clients of at most ``POOL_SIZE``
  connections each: httpcore's pool scans (and probes with a syscall) every idle connection
  on each request start and end, so one pool of 64 costs O(64) per request;
* answers are read with ``with_raw_response`` and parsed as plain JSON, skipping the SDK's
  construction of pydantic models we would only unpack again.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import math
import os
import time
from typing import Any

from meddata.llm.backends.base import Backend, Completion, PermanentError, TransientError
from meddata.llm.config import LLMConfig
from meddata.llm.errors import LLMConfigError
from meddata.llm.guard import route_for
from meddata.llm.types import ChatRequest

#: Status codes worth retrying besides 5xx.
RETRY_STATUS = {408, 409, 425, 429}
#: Connections per SDK client (one httpcore pool each).
POOL_SIZE = 16


def parse_retry_after(headers: Any) -> float | None:
    """Seconds to wait from ``retry-after-ms`` / ``retry-after`` (seconds or HTTP date)."""
    if headers is None:
        return None
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if not value:
            continue
        try:
            seconds = float(value) / divisor
        except ValueError:
            parsed = email.utils.parsedate_tz(value)
            if parsed is None:
                continue
            seconds = email.utils.mktime_tz(parsed) - time.time()
        if math.isfinite(seconds):
            return max(0.0, seconds)
    return None


class OpenAIBackend(Backend):
    name = "openai"

    def __init__(self, llm_name: str, config: LLMConfig):
        super().__init__(config.effective_model)
        self.config = config
        self.base_url = config.effective_base_url
        self.route = route_for(self.base_url)
        self._clients: list = []
        self._next = 0
        if config.api_key_env:
            key = os.environ.get(config.api_key_env)
            if not key:
                raise LLMConfigError(
                    f"llms.{llm_name}: key 'api_key_env': environment variable {config.api_key_env} is not set"
                )
            self._api_key = key
        else:
            self._api_key = "EMPTY"  # local servers ignore it; the SDK wants a non-empty string

    @property
    def is_local(self) -> bool:
        return self.route.local

    @property
    def proxy(self) -> str | None:
        """The environment proxy requests pass through (never one for a local endpoint)."""
        return self.route.proxy

    @property
    def endpoint(self) -> str:
        return self.base_url

    @staticmethod
    def _quiet_transport_logs() -> None:
        """httpx logs every request at INFO; at hundreds of requests a second that buries the
        build's own output. Only loggers nobody configured are turned down."""
        for name in ("httpx", "httpx2"):
            lg = logging.getLogger(name)
            if lg.level == logging.NOTSET:
                lg.setLevel(logging.WARNING)

    def _sdk(self):
        """The next AsyncOpenAI client (round robin), built on first use inside the client's
        event loop; building them opens no connection."""
        if not self._clients:
            import openai

            self._quiet_transport_logs()
            shards = max(1, math.ceil(self.config.max_concurrency / POOL_SIZE))
            self._clients = [
                openai.AsyncOpenAI(api_key=self._api_key, base_url=self.base_url, max_retries=0,
                                   timeout=self.config.timeout, http_client=self._http_client(openai))
                for _ in range(shards)
            ]
        self._next = (self._next + 1) % len(self._clients)
        return self._clients[self._next]

    def _http_client(self, openai: Any) -> Any:
        """The SDK's default httpx client, with environment settings (proxies above all) off for
        a local endpoint: HTTP_PROXY must never carry raw PHI off the machine (the PHI guard
        let those requests through because the endpoint is local). A remote endpoint keeps the
        environment's proxies and CA settings; the guard already treats it as off the machine."""
        return openai.DefaultAsyncHttpxClient(trust_env=not self.route.local)

    def _kwargs(self, request: ChatRequest) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": request.messages,
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
        }
        if request.seed is not None:
            kwargs["seed"] = request.seed
        mode = self.config.response_format
        if mode != "none" and request.wants_json:
            if request.json_schema is not None and mode in ("auto", "json_schema"):
                kwargs["response_format"] = {
                    "type": "json_schema", "json_schema": {"name": "output", "schema": request.json_schema},
                }
            else:
                kwargs["response_format"] = {"type": "json_object"}
        return kwargs

    async def complete(self, request: ChatRequest, *, timeout: float) -> Completion:
        import openai

        client = self._sdk()
        try:
            raw = await asyncio.wait_for(
                client.chat.completions.with_raw_response.create(**self._kwargs(request), timeout=timeout), timeout
            )
            body = json.loads(raw.http_response.content)
        except asyncio.TimeoutError:
            raise TransientError(f"timeout after {timeout:g}s") from None
        except openai.APIStatusError as exc:
            code = exc.status_code
            if code >= 500 or code in RETRY_STATUS:
                raise TransientError(f"HTTP {code}", parse_retry_after(exc.response.headers)) from None
            raise PermanentError(f"HTTP {code} from {self.base_url}", _server_message(exc)) from None
        except openai.APITimeoutError:
            raise TransientError(f"timeout after {timeout:g}s") from None
        except openai.APIConnectionError as exc:
            cause = type(exc.__cause__).__name__ if exc.__cause__ else "connection error"
            raise TransientError(f"connection error ({cause})") from None
        except openai.APIResponseValidationError:
            raise TransientError("response body is not a valid chat completion") from None
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise TransientError("response body is not valid JSON") from None
        except openai.OpenAIError as exc:  # any other SDK error: report it, do not retry blindly
            raise PermanentError(f"OpenAI client error ({type(exc).__name__})") from None
        return _completion(body, self.model)

    async def aclose(self) -> None:
        clients, self._clients = self._clients, []
        for c in clients:
            await c.close()


def _server_message(exc: Exception) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        msg = err.get("message") if isinstance(err, dict) else err
        if msg:
            return str(msg)[:300]
    return type(exc).__name__


def _completion(body: Any, model: str) -> Completion:
    """Take text, usage and model from a chat-completion body, checking its shape."""
    try:
        choice = body["choices"][0]
        message = choice["message"]
    except (TypeError, KeyError, IndexError):
        raise TransientError("response body is not a valid chat completion") from None
    text = message.get("content") if isinstance(message, dict) else None
    if not isinstance(text, str):
        refusal = message.get("refusal") if isinstance(message, dict) else None
        raise PermanentError("the model returned no text" + (" (refusal)" if refusal else ""))
    usage = body.get("usage") or {}
    return Completion(
        text=text,
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        model=str(body.get("model") or model),
        finish_reason=choice.get("finish_reason"),
    )
