"""Quality filters. Each returns keep or (False, reason)."""

from __future__ import annotations

from pydantic import model_validator

from meddata.records import text_of
from meddata.registry import register
from meddata.steps import Filter, StepContext, StepParams


class LengthParams(StepParams):
    min_chars: int | None = None
    max_chars: int | None = None
    min_words: int | None = None
    max_words: int | None = None
    fields: list[str] | None = None

    @model_validator(mode="after")
    def _some_bound(self):
        if all(v is None for v in (self.min_chars, self.max_chars, self.min_words, self.max_words)):
            raise ValueError("set at least one of min_chars, max_chars, min_words, max_words")
        return self


@register
class LengthFilter(Filter):
    name = "length_filter"
    description = "Drop rows whose content is shorter or longer than the bounds (characters or words)."
    Params = LengthParams

    def keep(self, row: dict, ctx: StepContext) -> bool | tuple[bool, str]:
        p: LengthParams = self.params
        text = text_of(row, p.fields)
        chars = len(text)
        if p.min_chars is not None and chars < p.min_chars:
            return False, "too_short"
        if p.max_chars is not None and chars > p.max_chars:
            return False, "too_long"
        if p.min_words is not None or p.max_words is not None:
            words = len(text.split())
            if p.min_words is not None and words < p.min_words:
                return False, "too_few_words"
            if p.max_words is not None and words > p.max_words:
                return False, "too_many_words"
        return True
