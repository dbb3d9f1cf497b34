"""Which rows a generator works on: ``sources`` restricts a step to rows from some inputs.

A recipe often mixes inputs of the same shape for different purposes (textbook passages and
clinical notes are both ``text`` rows): ``passage_dialogue: {sources: [openstax]}`` and
``note_tasks: {sources: [mimic]}`` then each take only their own. Rows outside the scope
follow the step's ``other_rows`` (kept unchanged by default), so nothing is lost.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field

from meddata.llm.generator import GeneratorParams


class ScopedParams(GeneratorParams):
    sources: list[str] | None = Field(default=None, min_length=1,
                                      description="only rows whose 'source' is listed (default: every row)")


def in_scope(params: Any, row: Mapping[str, Any]) -> bool:
    """Whether ``row`` comes from a source the step's ``sources`` parameter lists."""
    sources = getattr(params, "sources", None)
    return sources is None or row.get("source") in sources
