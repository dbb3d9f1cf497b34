"""What a step yields besides a kept row: a :class:`Drop` (on purpose, with a reason) or a
:class:`Quarantine` (malformed input, or a service that did not answer). Kept apart from
:mod:`meddata.steps` so readers in :mod:`meddata.io` can yield them without importing the
step machinery."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Drop", "Quarantine"]


@dataclass(frozen=True)
class Drop:
    """Remove ``row`` on purpose. ``reason`` is a short snake_case label (``too_short``)."""

    row: Mapping[str, Any]
    reason: str


@dataclass(frozen=True)
class Quarantine:
    """Malformed input. ``error`` must name the field and say what was expected, never
    quote the value (it may hold PHI)."""

    error: str
    file: str | None = None
    locator: str | None = None
    row: Mapping[str, Any] | None = None
    #: The service that did not answer (``"llms.<name>"``) when the failure is one of transport
    #: (connection refused, timeout, 429/5xx after retries), not of the input. Such rows are
    #: retried on the next run: the step is not checkpointed as finished, and many in a row
    #: stop the build with "cannot reach ...".
    service: str | None = None
