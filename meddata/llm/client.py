"""The LLM client: one sync call, ``generate(requests) -> responses``, for every step.

Everything generators must not re-implement lives here, in this order per request:
PHI guard (whole batch, before anything is scheduled) -> cache lookup -> in-flight
de-duplication -> rate limits (rpm/tpm) -> concurrency slot -> backend call with a timeout ->
retries with exponential backoff and jitter (Retry-After honoured, and it pauses every
request of this client) -> JSON validation with one repair turn -> cache write (committed
at once) -> token and cost accounting.
"""

from __future__ import annotations

import asyncio
import atexit
import dataclasses
import logging
import os
import random
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from meddata.llm.backends import (
    Backend,
    BackendError,
    Completion,
    PermanentError,
    TransientError,
    make_backend,
)
from meddata.llm.cache import ResponseCache, request_key
from meddata.llm.config import LLMConfig, default_cache_path, parse_config
from meddata.llm.guard import PHIGuard, is_safe_status
from meddata.llm.loop import LoopThread
from meddata.llm.ratelimit import RateLimiter, SharedRateLimiter
from meddata.llm.structured import OutputError, check_output, repair_request
from meddata.llm.types import ChatRequest, ChatResponse
from meddata.models import REGISTRY as LOCAL_MODELS  # short names are not paths

if TYPE_CHECKING:
    from meddata.steps import StepContext

logger = logging.getLogger("meddata.llm")

#: Longest Retry-After we obey, in seconds (beyond that a provider means "come back later").
MAX_RETRY_AFTER = 600.0


class LLMClient:
    """A configured LLM with cache, guard, limits and accounting. Build with :func:`client_for`."""

    def __init__(self, name: str, config: LLMConfig, *, cache_path: Path | None = None,
                 backend: Backend | None = None, shared_limits: Mapping[str, str] | None = None):
        self.name = name
        #: ``{"rpm"|"tpm": Ray actor name}``: limits shared by a cluster's workers (Ray engine).
        self.shared_limits = dict(shared_limits or {})
        self.config = config
        self.backend = backend or make_backend(name, config)
        self.model = self.backend.model
        self.guard = PHIGuard(name, self.backend.endpoint, local=self.backend.is_local,
                              allow_phi_to_remote=config.allow_phi_to_remote,
                              proxy=getattr(self.backend, "proxy", None))  # only HTTP backends have one
        self.cache_path = cache_path
        self.stats: dict[str, float] = {
            "requests": 0, "cached": 0, "sent": 0, "retries": 0, "errors": 0, "invalid_output": 0,
            "prompt_tokens": 0, "completion_tokens": 0, "tokens": 0, "cost": 0.0,
        }
        self._loop = LoopThread(f"meddata-llm-{name}")
        self._cache: ResponseCache | None = None
        self._sem: asyncio.Semaphore | None = None
        self._rpm: RateLimiter | SharedRateLimiter | None = None
        self._tpm: RateLimiter | SharedRateLimiter | None = None
        self._pause_until = 0.0
        self._key_extra = {"response_format": config.response_format}
        self.closed = False

    def __repr__(self) -> str:
        return f"LLMClient({self.name!r}, backend={self.backend.name}, model={self.model!r})"

    def __reduce__(self):
        raise TypeError("an LLMClient belongs to one process; call ctx.llm(name) where you need it")

    # -- public API ----------------------------------------------------------------------------
    def generate(self, requests: Sequence[ChatRequest]) -> list[ChatResponse]:
        """Answer ``requests`` concurrently; one response per request, in order.

        Raises :class:`~meddata.llm.errors.PHIGuardError` (before anything is sent) when raw-PHI
        requests target a remote endpoint. Every other failure is a response with ``error``.
        """
        if self.closed:
            raise RuntimeError(f"llms.{self.name}: the client is closed; get a new one with ctx.llm(name)")
        requests = list(requests)
        for i, r in enumerate(requests):
            if not isinstance(r, ChatRequest):
                raise TypeError(f"requests[{i}] is a {type(r).__name__}, expected ChatRequest")
        if not requests:
            return []
        self.guard.check(requests)
        if self.config.temperature is not None:
            requests = [dataclasses.replace(r, temperature=self.config.temperature) for r in requests]
        return self._loop.run(self._generate(requests))

    def close(self) -> None:
        """Close connections and the cache file. The client cannot be used afterwards."""
        if self.closed:
            return
        self.closed = True
        if not self._loop.started:  # never used: nothing was opened
            return
        try:
            self._loop.run(self._aclose())
        finally:
            self._loop.close()

    # -- async internals (all on the client's own loop thread) --------------------------------
    def _ensure_state(self) -> None:
        if self._sem is None:
            self._sem = asyncio.Semaphore(self.config.max_concurrency)
            shared = self.shared_limits
            if self.config.rpm:
                self._rpm = SharedRateLimiter(shared["rpm"]) if "rpm" in shared else RateLimiter(self.config.rpm)
            if self.config.tpm:
                self._tpm = SharedRateLimiter(shared["tpm"]) if "tpm" in shared else RateLimiter(self.config.tpm)
            if self.cache_path is not None:
                self._cache = ResponseCache(self.cache_path)

    async def _aclose(self) -> None:
        await self.backend.aclose()
        if self._cache is not None:
            self._cache.close()
            self._cache = None

    async def _generate(self, requests: list[ChatRequest]) -> list[ChatResponse]:
        self._ensure_state()
        keys = [request_key(self.backend.name, self.model, r, self._key_extra) for r in requests]
        cacheable = [self._cache is not None and (is_safe_status(r.phi_status) or self.config.cache_raw)
                     for r in requests]
        hits = self._cache.get_many(k for k, c in zip(keys, cacheable) if c) if self._cache else {}
        results: list[ChatResponse | None] = [None] * len(requests)
        tasks: dict[tuple[str, bool], asyncio.Task] = {}
        first_of: dict[tuple[str, bool], int] = {}
        for i, (req, key, can_cache) in enumerate(zip(requests, keys, cacheable)):
            if can_cache and key in hits:
                results[i] = _from_cache(hits[key])
            elif (key, can_cache) not in tasks:
                tasks[(key, can_cache)] = asyncio.create_task(self._complete(req, key, can_cache))
                first_of[(key, can_cache)] = i
        if tasks:
            await asyncio.gather(*tasks.values())
        for i, (key, can_cache) in enumerate(zip(keys, cacheable)):
            if results[i] is None:
                resp = tasks[(key, can_cache)].result()
                # A repeat of a request in this batch costs nothing: report it as cached.
                results[i] = resp if first_of[(key, can_cache)] == i else dataclasses.replace(resp, cached=True)
        done: list[ChatResponse] = results  # type: ignore[assignment]
        self._account(done)
        return done

    def _account(self, responses: list[ChatResponse]) -> None:
        s = self.stats
        s["requests"] += len(responses)
        failures: Counter[str] = Counter()
        for r in responses:
            if r.cached:
                s["cached"] += 1
                continue
            s["sent"] += 1
            s["retries"] += r.retries
            s["prompt_tokens"] += r.prompt_tokens
            s["completion_tokens"] += r.completion_tokens
            s["tokens"] += r.prompt_tokens + r.completion_tokens
            s["cost"] += r.cost
            if r.error is not None:
                s["errors"] += 1
                s["invalid_output"] += r.invalid_output
                failures[r.error.split(" (")[0]] += 1
        if failures:
            summary = ", ".join(f"{reason} x{n}" for reason, n in failures.most_common(5))
            logger.warning("llms.%s: %d of %d requests failed: %s", self.name, sum(failures.values()),
                           len(responses), summary)

    async def _complete(self, req: ChatRequest, key: str, can_cache: bool) -> ChatResponse:
        first, retries = await self._call(req)
        if isinstance(first, BackendError):
            return ChatResponse(text=None, parsed=None, error=self._reason(req, first), retries=retries,
                                model=self.model)
        comps = [first]
        text, parsed, error, invalid, store = first.text, None, None, False, True
        if req.wants_json:
            try:
                parsed = check_output(req, first.text)
            except OutputError as bad:
                second, more = await self._call(repair_request(req, first.text, bad))
                retries += more
                if isinstance(second, BackendError):
                    error = f"invalid JSON output ({bad.reason}); the repair request failed: {self._reason(req, second)}"
                    invalid, store = True, False  # transport failure: worth trying again next run
                else:
                    comps.append(second)
                    text = second.text
                    try:
                        parsed = check_output(req, second.text)
                    except OutputError as still:
                        error, invalid = f"invalid JSON output after one repair retry: {still.reason}", True
                if error:
                    logger.debug("llms.%s: request %s: %s", self.name, req.key, error)
        p_tok = sum(c.prompt_tokens for c in comps)
        c_tok = sum(c.completion_tokens for c in comps)
        resp = ChatResponse(
            text=text, parsed=parsed, error=error, prompt_tokens=p_tok, completion_tokens=c_tok,
            model=comps[-1].model or self.model, retries=retries, invalid_output=invalid,
            cost=self.config.prices.cost(p_tok, c_tok) if self.config.prices else 0.0,
        )
        if can_cache and store and self._cache is not None:
            self._cache.put(key, self.model, req, {
                "text": resp.text, "parsed": resp.parsed, "error": resp.error, "invalid_output": invalid,
                "prompt_tokens": p_tok, "completion_tokens": c_tok, "model": resp.model,
            })
        return resp

    def _reason(self, req: ChatRequest, err: BackendError) -> str:
        if err.detail and is_safe_status(req.phi_status):
            return f"{err.reason}: {err.detail}"
        return err.reason

    async def _call(self, req: ChatRequest) -> tuple[Completion | BackendError, int]:
        """One request with retries. Returns the completion or the final error, and the retries."""
        loop = asyncio.get_running_loop()
        estimate = _estimate_tokens(req)
        retries = 0
        while True:
            wait = self._pause_until - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            async with self._sem:  # type: ignore[union-attr]
                # rate tokens are taken with a concurrency slot in hand, right before sending:
                # taken earlier, they pile up behind the slots and go out as one burst
                if self._rpm is not None:
                    await self._rpm.acquire(1)
                if self._tpm is not None:
                    await self._tpm.acquire(estimate)
                try:
                    comp = await self.backend.complete(req, timeout=self.config.timeout)
                except TransientError as exc:
                    err = exc
                except PermanentError as exc:
                    return exc, retries
                else:
                    used = comp.prompt_tokens + comp.completion_tokens
                    if self._tpm is not None and used:
                        self._tpm.adjust(used - estimate)
                    return comp, retries
            if retries >= self.config.max_retries:
                attempts = retries + 1
                return TransientError(f"{err.reason} (gave up after {attempts} attempt{'s' * (attempts > 1)})"), retries
            delay = self._delay(retries, err.retry_after)
            if err.retry_after is not None:  # the server asked everyone to wait, not just this request
                self._pause_until = max(self._pause_until, loop.time() + min(err.retry_after, MAX_RETRY_AFTER))
            retries += 1
            logger.debug("llms.%s: request %s: %s; retry %d in %.2fs", self.name, req.key, err.reason, retries, delay)
            await asyncio.sleep(delay)

    def _delay(self, retries: int, retry_after: float | None) -> float:
        """Backoff before retry ``retries + 1``: at least Retry-After when the server sent one
        (plus up to 10% jitter, so paused requests do not return in one burst), else
        exponential with jitter in [half, full]."""
        if retry_after is not None:
            wait = min(retry_after, MAX_RETRY_AFTER)
            return wait + random.uniform(0, 0.1 * wait)
        cfg = self.config
        return min(cfg.backoff_max, cfg.backoff_base * 2**retries) * random.uniform(0.5, 1.0)


def _estimate_tokens(req: ChatRequest) -> int:
    """Rough tokens of a request for the tpm limiter: 4 characters a token plus max_tokens."""
    chars = sum(len(str(m.get("content") or "")) for m in req.messages)
    return chars // 4 + req.max_tokens


def _from_cache(entry: Mapping[str, Any]) -> ChatResponse:
    return ChatResponse(
        text=entry.get("text"), parsed=entry.get("parsed"), error=entry.get("error"),
        prompt_tokens=int(entry.get("prompt_tokens") or 0), completion_tokens=int(entry.get("completion_tokens") or 0),
        cached=True, model=entry.get("model") or "", invalid_output=bool(entry.get("invalid_output")),
    )


# -- one client per (process, LLM) ----------------------------------------------------------------
_CLIENTS: dict[tuple, LLMClient] = {}
_LOCK = threading.Lock()


def resolve_cache_path(config: LLMConfig, ctx: StepContext | None) -> Path | None:
    """``cache: false`` -> None; a path -> resolved against the recipe folder; else the default."""
    if config.cache is False:
        return None
    if isinstance(config.cache, str):
        return ctx.resolve(config.cache) if ctx is not None else Path(config.cache).expanduser()
    return default_cache_path()


def client_for(name: str, config: Mapping[str, Any] | LLMConfig, ctx: StepContext | None = None) -> LLMClient:
    """The process-wide client for LLM ``name`` (created on first use, reused afterwards).

    A worker process gets its own client (and connections); all share the cache file, and on
    a Ray cluster the rpm/tpm budget named in ``ctx.rate_budgets[name]``.
    """
    cfg = parse_config(name, config)
    if cfg.backend == "transformers" and ctx is not None and cfg.model_path not in LOCAL_MODELS:
        cfg = cfg.model_copy(update={"model_path": str(ctx.resolve(str(cfg.model_path)))})
    cache_path = resolve_cache_path(cfg, ctx)
    endpoint = cfg.effective_base_url if cfg.backend == "openai" else cfg.model_path
    shared = dict(ctx.rate_budgets.get(name) or {}) if ctx is not None else {}
    key = (os.getpid(), name, cfg.model_dump_json(), endpoint, cfg.effective_model, str(cache_path),
           tuple(sorted(shared.items())))
    with _LOCK:
        client = _CLIENTS.get(key)
        if client is None or client.closed:
            client = _CLIENTS[key] = LLMClient(name, cfg, cache_path=cache_path, shared_limits=shared)
        return client


@atexit.register
def close_all() -> None:
    """Close this process's clients (connections, cache files)."""
    with _LOCK:
        mine = [k for k in _CLIENTS if k[0] == os.getpid()]
        clients = [_CLIENTS.pop(k) for k in mine]
    for c in clients:
        try:
            c.close()
        except Exception:  # closing at exit must not mask the real outcome of a run
            logger.debug("closing llms.%s failed", c.name, exc_info=True)
