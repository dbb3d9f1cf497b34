"""A small learned PHI tagger shipped with meddata, for recall where rules and dictionaries
have no cue to go on (lower-case relatives' names, bare facility names, ALL-CAPS lines).

It is a spaCy ``ner`` pipe on a hashed-embedding CNN trained from scratch on real clinical text
with synthetic PHI written into it (``benchmarks/train_deid_model.py``; data, licences and
scores in ``model/CARD.md``). It needs only spaCy, no downloaded model; without spaCy or
without the model files :func:`load` returns None and detection stays rules-only.

Notes are cut at line breaks into segments of at most :data:`MAX_SEGMENT` characters (the
length the model was trained on), tagged in batches, and the spans mapped back to the note.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from meddata.filters.deid.ner import builtin_factories_only, import_spacy
from meddata.filters.deid.spans import Span

logger = logging.getLogger("meddata.deid")

MODEL_DIR = Path(__file__).parent / "model"
MAX_SEGMENT = 1000
_REQUIRED = ("config.cfg", "meta.json", "tokenizer", "ner/cfg", "ner/model", "ner/moves", "vocab/strings.json")
SOURCE = "model"  # Span.source of everything this model finds
_EDGE = " \t\r\n,;:"
_PAIRS = {"(": ")", "[": "]", '"': '"', "'": "'"}


class LearnedModel:
    """The loaded tagger. ``info`` holds its version, training data summary and scores."""

    def __init__(self, nlp: Any, info: dict):
        self.nlp = nlp
        self.info = info
        self.labels = tuple(nlp.get_pipe("ner").labels)

    def spans_many(self, texts: Sequence[str], batch_size: int = 64) -> list[list[Span]]:
        """PHI spans per text, in text order, sorted by start."""
        jobs = [(i, a, b) for i, text in enumerate(texts) for a, b in segments(text)]
        out: list[list[Span]] = [[] for _ in texts]
        docs = self.nlp.pipe((texts[i][a:b] for i, a, b in jobs), batch_size=batch_size)
        for (i, a, _b), doc in zip(jobs, docs):
            for ent in doc.ents:
                start, end = _trim(doc.text, ent.start_char, ent.end_char)
                if end > start:
                    out[i].append(Span(a + start, a + end, ent.label_, SOURCE))
        for spans in out:
            spans.sort(key=lambda s: (s.start, s.end))
        return out

    def spans(self, text: str) -> list[Span]:
        return self.spans_many([text])[0]


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    """Drop spaces and separators at the edges of a span, and a bracket or quote whose
    partner is not inside it ("(617) 432-8890" keeps its parenthesis, "(Dr. Kohn" loses it)."""
    while start < end:
        c = text[start]
        if c in _EDGE or (c in _PAIRS and _PAIRS[c] not in text[start + 1:end]):
            start += 1
        else:
            break
    while end > start:
        c = text[end - 1]
        opener = next((o for o, cl in _PAIRS.items() if cl == c), None)
        if c in _EDGE or (opener is not None and opener not in text[start:end - 1]):
            end -= 1
        else:
            break
    return start, end


def segments(text: str, max_len: int = MAX_SEGMENT) -> Iterator[tuple[int, int]]:
    """``(start, end)`` pieces of ``text``: whole lines packed up to ``max_len`` characters; a
    longer line is cut after a sentence end or, failing that, at a space."""
    n = len(text)
    start = 0
    while start < n:
        end = min(n, start + max_len)
        if end < n:
            cut = text.rfind("\n", start, end)
            if cut > start:
                end = cut + 1
            else:
                cut = text.rfind(". ", start, end)
                if cut <= start + max_len // 4:
                    cut = text.rfind(" ", start, end)
                end = cut + 1 if cut > start else end
        if text[start:end].strip():
            yield start, end
        start = end


@lru_cache(maxsize=4)
def load(path: str | Path | None = None) -> LearnedModel | None:
    """The shipped tagger (cached per process), or None when spaCy or the model files are
    missing (detection then stays rules-only; the caller decides whether to warn)."""
    model_dir = Path(path) if path is not None else MODEL_DIR
    missing = [f for f in _REQUIRED if not (model_dir / f).is_file()]
    if missing:
        logger.debug("learned PHI model at %s lacks %s", model_dir, ", ".join(missing))
        return None
    spacy = import_spacy()
    if spacy is None:
        logger.debug("spaCy is not installed: learned PHI model unavailable")
        return None
    with builtin_factories_only():  # this model uses only spaCy's own "ner" factory
        nlp = spacy.load(model_dir)
    info_file = model_dir / "info.json"
    info = json.loads(info_file.read_text(encoding="utf-8")) if info_file.is_file() else {}
    info.setdefault("path", str(model_dir))
    return LearnedModel(nlp, info)
