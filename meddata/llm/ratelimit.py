"""Requests-per-minute and tokens-per-minute limits as async token buckets.

A bucket refills continuously at ``per_minute / 60`` per second and holds at most one
second's worth (at least one unit), so a run never bursts far above the provider's limit.
A single request larger than the bucket waits for a full bucket and then runs into debt,
which later requests repay: the long-run rate holds without deadlock.
"""

from __future__ import annotations

import asyncio
import time


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
