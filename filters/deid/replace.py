"""Apply a replacement strategy to detected spans.

* ``mask``      – ``[NAME]``, ``[DATE]``, ...: the type stays readable, the value is gone.
* ``redact``    – the value is removed.
* ``surrogate`` – realistic fakes (see :mod:`meddata.filters.deid.surrogate`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from meddata.filters.deid.spans import Span
from meddata.filters.deid.surrogate import Surrogates

Strategy = Literal["mask", "redact", "surrogate"]
STRATEGIES = ("mask", "redact", "surrogate")


def replace_spans(text: str, spans: Sequence[Span], strategy: Strategy,
                  surrogates: Surrogates | None = None) -> str:
    """``text`` with every span replaced. Spans must not overlap (use ``merge_spans``)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if strategy == "surrogate" and surrogates is None:
        raise ValueError("the surrogate strategy needs a Surrogates instance")
    if strategy == "surrogate":
        surrogates.forbid(text[s.start:s.end] for s in spans)
    out, pos = [], 0
    for s in sorted(spans, key=lambda s: s.start):
        if s.start < pos:
            raise ValueError("spans overlap; merge them first")
        out.append(text[pos:s.start])
        if strategy == "mask":
            out.append(f"[{s.type}]")
        elif strategy == "surrogate":
            out.append(surrogates.replace(s.type, text[s.start:s.end]))
        pos = s.end
    out.append(text[pos:])
    return "".join(out)
