"""Cleaning: unicode, HTML, whitespace and control characters."""

from __future__ import annotations

import html
import re
import unicodedata

from meddata.records import map_text
from meddata.registry import register
from meddata.steps import Mapper, StepContext, StepParams

_TAG = re.compile(r"<[^>]{1,200}>")
_BLOCK_TAG = re.compile(r"</?(p|br|div|li|ul|ol|h[1-6]|tr|table)\b[^>]*>", re.I)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SPACES = re.compile(r"[ \t\u00a0]+")
_BLANKS = re.compile(r"\n{3,}")


class NormalizeParams(StepParams):
    unicode_form: str = "NFKC"
    html: bool = True
    collapse_whitespace: bool = True


def normalize(text: str, *, form: str = "NFKC", strip_html: bool = True, collapse: bool = True) -> str:
    """NFKC, HTML unescape and tag stripping, control characters out, whitespace tidied."""
    if strip_html and "<" in text:
        text = _BLOCK_TAG.sub("\n", text)
        text = _TAG.sub("", text)
    if strip_html and "&" in text:
        text = html.unescape(text)
    text = unicodedata.normalize(form, text)
    text = _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    if collapse:
        text = _SPACES.sub(" ", text)
        text = "\n".join(line.strip() for line in text.split("\n"))
        text = _BLANKS.sub("\n\n", text)
    return text.strip()


@register
class NormalizeText(Mapper):
    name = "normalize_text"
    description = "Unicode NFKC, HTML unescape and tag stripping, control characters, whitespace."
    Params = NormalizeParams

    def process(self, row: dict, ctx: StepContext) -> dict:
        p: NormalizeParams = self.params
        return map_text(row, lambda t: normalize(t, form=p.unicode_form, strip_html=p.html,
                                                 collapse=p.collapse_whitespace))
