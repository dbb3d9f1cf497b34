"""Requests-per-minute and tokens-per-minute limits as async token buckets.

A bucket refills continuously at ``per_minute / 60`` per second and holds at most one
second's worth (at least one unit), so a run never bursts far above the provider's limit.
A single request larger than the bucket waits for a full bucket and then runs into debt,
which later requests repay: the long-run rate holds without deadlock.

On a Ray cluster every worker process has its own client, so a per-process bucket would
multiply the provider's limit by the number of workers. There the engine starts one
:class:`TokenBucket` per LLM and limit as a named Ray actor, and every client draws from it
through :class:`SharedRateLimiter`: one rpm/tpm budget for the whole cluster.
"""

from __future__ import annotations

import asyncio
import time

#: Ray namespace of the shared buckets (see :class:`TokenBucket`).
NAMESPACE = "meddata"


class RateLimiter:
    def __init__(self, per_minute: float, burst: float | None = None):
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, burst if burst is not None else self.rate)
        self.level = self.capacity
        self.stamp = time.monotonic()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    async def acquire(self, amount: float = 1.0) -> None:
        """Wait until ``amount`` units (or a full bucket, for oversize amounts) are available."""
        async with self._lock:  # first come, first served
            need = min(amount, self.capacity)
            self._refill()
            while self.level < need:
                await asyncio.sleep((need - self.level) / self.rate)
                self._refill()
            self.level -= amount

    def adjust(self, delta: float) -> None:
        """Correct an estimate after the fact (positive: more was used than acquired)."""
        self._refill()
        self.level = min(self.capacity, self.level - delta)


class TokenBucket:
    """The bucket itself, without waiting: the body of a Ray actor shared by a cluster's workers."""

    def __init__(self, per_minute: float, burst: float | None = None):
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, burst if burst is not None else self.rate)
        self.level = self.capacity
        self.stamp = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def take(self, amount: float = 1.0) -> float:
        """Take ``amount`` and return 0, or take nothing and return the seconds to wait."""
        need = min(amount, self.capacity)
        self._refill()
        if self.level >= need:
            self.level -= amount
            return 0.0
        return (need - self.level) / self.rate

    def adjust(self, delta: float) -> None:
        self._refill()
        self.level = min(self.capacity, self.level - delta)


class SharedRateLimiter:
    """:class:`RateLimiter`'s interface over a :class:`TokenBucket` actor named ``actor_name``."""

    def __init__(self, actor_name: str):
        import ray  # only on a Ray cluster

        self._actor = ray.get_actor(actor_name, namespace=NAMESPACE)

    async def acquire(self, amount: float = 1.0) -> None:
        while True:
            wait = await asyncio.wrap_future(self._actor.take.remote(amount).future())
            if wait <= 0:
                return
            await asyncio.sleep(wait)

    def adjust(self, delta: float) -> None:
        self._actor.adjust.remote(delta)
