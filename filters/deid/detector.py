"""The PHI detector: rules + dictionaries (+ spaCy NER when installed), merged.

    det = Detector()                       # loads dictionaries, and the model if available
    spans = det.detect(text)               # list[Span], character offsets into text
    batch = det.detect_many(texts)         # same, batching the model with nlp.pipe

Detection favours recall: once a name or place is found anywhere in a note, every other
mention of it in that note is flagged too (``Mr. Jones`` ... ``Jones reports``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from meddata.filters.deid import patterns
from meddata.filters.deid.dictionaries import MONTHS, STOPWORDS, WEEKDAYS, lexicon
from meddata.filters.deid.names import CONTRACTIONS, MEDICAL_FOLLOWERS, RELATIONS, TITLES, NameFinder
from meddata.filters.deid.ner import MEDICAL_SUFFIX, MODEL, _segments, load_model, model_spans, model_windows
from meddata.filters.deid.places import PlaceFinder
from meddata.filters.deid.spans import Span, merge_spans
from meddata.filters.deid.tokens import Token, tokenize

_CONTEXTUAL = ("NAME", "LOCATION", "HOSPITAL")


@dataclass(frozen=True)
class DetectorConfig:
    """What to flag. Defaults are recall-first."""

    model: str = "auto"        # auto: use spaCy if installed | on: require it | off: rules only
    model_name: str = MODEL
    # meddata's own PHI tagger: auto (use when shipped) | on (require) | off. Off by default: v0.1
    # adds little recall on held-out real notes and costs precision there (README, model CARD)
    learned: str = "off"
    all_ages: bool = True      # every age (i2b2 practice); False flags only ages over 89 (Safe Harbor minimum)
    years: bool = True         # bare years ("in 2012", "'92", "MI 92") are flagged too
    regions: bool = True       # states and countries too (not required by Safe Harbor)
    weekdays: bool = True      # weekday names ("seen on Tuesday"; not a Safe Harbor identifier)
    propagate: bool = True     # a name found once is flagged everywhere in the same text


SAFE_HARBOR = dict(all_ages=False, regions=False, weekdays=False)
"""Safe Harbor: every date element and year (a year can reveal an age over 89), ages over 89;
ages up to 89, weekdays, states and countries are kept (clinically needed, not identifiers)."""
POLICIES = ("safe_harbor", "recall")
DEFAULT_POLICY = "safe_harbor"


def config_for(policy: str = DEFAULT_POLICY, **overrides) -> DetectorConfig:
    """``safe_harbor`` (default: what the HIPAA rule requires, keeping ages up to 89, weekdays,
    states) or ``recall`` (also every age, weekday, state and country, as i2b2-style gold
    standards mark them)."""
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got {policy!r}")
    base = SAFE_HARBOR if policy == "safe_harbor" else {}
    return DetectorConfig(**{**base, **overrides})


class Detector:
    def __init__(self, config: DetectorConfig | None = None):
        self.config = config or DetectorConfig()
        self.lex = lexicon()
        self.names = NameFinder(self.lex)
        self.places = PlaceFinder(self.lex)
        self._model = None
        self._model_pending = False  # installed, loaded on the first text that needs it
        if self.config.model == "auto" and _installed("spacy") and _installed(self.config.model_name):
            self._model_pending = True
        elif self.config.model != "off":
            self._model = load_model(self.config.model_name)
            if self._model is None and self.config.model == "on":
                raise RuntimeError(f"spaCy model {self.config.model_name!r} is required (model: on) but not installed")
        self._hospital_words = {w for phrase in self.lex.hospital_words for w in phrase}
        self._learned = None
        if self.config.learned != "off":
            self._learned = _load_learned()
            if self._learned is None and self.config.learned == "on":
                raise RuntimeError("meddata's learned PHI model is required (learned: on) but its files or spaCy "
                                   "are missing")

    @property
    def uses_learned(self) -> bool:
        return self._learned is not None

    @property
    def uses_model(self) -> bool:
        return self._model is not None or self._model_pending

    def detect(self, text: str) -> list[Span]:
        return self.detect_many([text])[0]

    def detect_many(self, texts: Sequence[str], batch_size: int = 64) -> list[list[Span]]:
        results: list[list[Span]] = []
        toks_all: list[list[Token]] = []
        for text in texts:
            toks = tokenize(text)
            toks_all.append(toks)
            results.append(self._rules(text, toks))
        if self.uses_model:
            jobs = []
            for i, text in enumerate(texts):
                covered = merge_spans(results[i])
                for s, e in _segments(text):
                    for a, b in model_windows(text[s:e], s, covered, self.lex):
                        jobs.append((i, text[a:b], a))
            if jobs and self._model_pending:
                # spaCy costs seconds to import: only texts with unexplained capitalized words pay for it
                self._model_pending = False
                self._model = load_model(self.config.model_name)
            if jobs and self._model is not None:
                found = model_spans(self._model, jobs, self.lex, batch_size=batch_size)
                for i, spans in found.items():
                    results[i].extend(spans)
        if self._learned is not None:
            for i, found in enumerate(self._learned.spans_many(texts)):
                results[i].extend(self.vet_learned(texts[i], toks_all[i], found))
        out = []
        for text, toks, spans in zip(texts, toks_all, results):
            if self.config.propagate:
                spans = spans + self._propagate(toks, spans)
            out.append(self._finish(text, spans, toks))
        return out

    # -- steps ---------------------------------------------------------------------------
    def _rules(self, text: str, toks: list[Token]) -> list[Span]:
        spans: list[Span] = []
        for family in patterns.FAMILIES:
            spans.extend(family(text))
        spans.extend(patterns.find_ages(text, 0 if self.config.all_ages else 90))
        spans = [s for s in spans if s.type != "DATE" or self._policy_keeps_date(text[s.start:s.end])]
        spans.extend(self.names.find(text, toks))
        spans.extend(self.places.find(text, toks))
        if self.config.regions:
            spans.extend(self.places.regions(toks))
        return spans

    def _policy_keeps_date(self, piece: str) -> bool:
        """False for a bare year or a lone weekday when the policy keeps those (one rule for
        the rules' and the learned model's dates)."""
        if not self.config.years and _bare_year(piece):
            return False
        return self.config.weekdays or not _WEEKDAY_ONLY.fullmatch(piece)

    def vet_learned(self, text: str, toks: list[Token], found: list[Span]) -> list[Span]:
        """The learned model's spans that survive the vocabulary veto and the policy.

        A name, place or hospital made only of known words (everyday, clinical, drug, disease
        words: "Vanco", "BLOOD", "Charcot") is kept only after a cue ("wife bill", "Dr. green")
        or, in mixed-case text, when it is capitalized mid-sentence and holds a dictionary name
        ("met Grace Brown"); in ALL-CAPS and lower-case lines capitals say nothing, so there a
        known word needs the cue. Other types keep the policy's limits (ages over 89 only, no
        weekdays under Safe Harbor)."""
        kept = []
        for s in found:
            piece = text[s.start:s.end]
            if s.type in _CONTEXTUAL:
                words = [t for t in toks if s.start <= t.start and t.end <= s.end and t.is_word]
                if not words:
                    continue
                after = text[s.end:s.end + 30].split()
                if after and after[0].lower().strip(".,;:()") in MEDICAL_FOLLOWERS:
                    continue  # "Dubin-Johnson syndrome", "San Luis Valley syndrome": a disease
                known = all(self.lex.is_word(t.fold) or self.lex.is_medical_proper(t.fold) or t.fold in STOPWORDS
                            or t.fold in MONTHS or t.fold in WEEKDAYS or t.fold.endswith(CONTRACTIONS)
                            or MEDICAL_SUFFIX.search(t.fold) or not t.text.isalpha() for t in words)
                cued = _cued(text, s.start)
                if not cued and len(words) == 1 and len(words[0].text) <= 4 and (
                        words[0].mode != "mixed" or words[0].text.isupper()):
                    continue  # "VASC", "TH", "gtt": short words in caps or lower-case lines are shorthand
                if known and not cued:
                    capitalized = all(t.mode == "mixed" and t.text[0].isupper() and not t.text.isupper()
                                      for t in words) and not words[0].initial_pos
                    if not (capitalized and any(self.lex.is_name(t.fold) for t in words)):
                        continue
                if s.type == "NAME" and not cued and not any(
                        t.mode == "mixed" and t.text[0].isupper() or self.lex.is_name(t.fold) for t in words):
                    continue  # no capital to go on (caps or lower-case line): a typo or shorthand needs a name list
                if known and cued and not any(self.lex.is_name(t.fold) for t in words):
                    continue  # "daughter separated", "father manages": a cue does not make a verb a name
                if s.type == "HOSPITAL" and "\n" in piece:
                    continue
                region = " ".join(t.fold for t in words if t.text.isalpha())
                if s.type != "NAME" and not self.config.regions and (
                        region in self.lex.states or region in self.lex.countries):
                    continue  # "lives in Utah", "moved to Colorado": the policy keeps states and countries
                if s.type == "HOSPITAL" and all(t.fold in self._hospital_words or t.fold in _GENERIC_PLACE_WORDS
                                                or t.fold in STOPWORDS for t in words):
                    continue  # "admitted to Medical Center", "Community College": no name in it
            elif s.type == "AGE":
                if "." in piece.strip("."):
                    continue  # "Temp. 99.3 F": a decimal is a measurement, never an age
                value = patterns.age_value(piece)
                if value is None or not self.config.all_ages and value < 90 or not (
                        _AGE_AFTER.match(text, s.end) or _AGE_BEFORE.search(text, max(0, s.start - 12), s.start)):
                    continue  # "95 percent", "Ninety-four patients": a number is an age only with an age word
            elif s.type == "DATE":
                if not _DATE_SHAPE.search(piece):
                    continue  # "the 5th", "9/11" in a table, a lone "4": not a date without a year or month
                if not self._policy_keeps_date(piece):
                    continue
            elif s.type in ("PHONE", "ID", "MRN", "SSN"):
                digits = sum(c.isdigit() for c in piece)
                if digits < (7 if s.type == "PHONE" else 5) or _RANGE_WITH_UNIT.match(text, s.start):
                    continue  # "850-4000 ng/mL", "1-800", years and counts
            kept.append(s)
        return kept

    def _propagate(self, toks: list[Token], spans: list[Span]) -> list[Span]:
        seeds: dict[str, str] = {}
        for s in spans:
            if s.type not in _CONTEXTUAL:
                continue
            for t in toks:
                if t.start >= s.end:
                    break
                if t.start >= s.start and t.is_word and len(t.text) >= 3:
                    w = t.fold
                    if w.endswith(CONTRACTIONS) or w in STOPWORDS or w in TITLES or w in MONTHS or w in WEEKDAYS or w in self._hospital_words:
                        continue
                    if s.type != "NAME" and (w in self.lex.clinical or self.lex.is_common(w)):
                        continue
                    if w in self.lex.states or w in self.lex.countries:
                        continue
                    seeds.setdefault(w, s.type)
        if not seeds:
            return []
        out = []
        for i, t in enumerate(toks):
            typ = seeds.get(t.fold) if t.is_word else None
            if typ is None and t.is_word and t.text[-1].isdigit():
                typ = seeds.get(t.fold.rstrip("0123456789"))  # "QUARTERMAIN 3" ... "QUARTERMAIN3"
            if typ is None:
                continue
            common = self.lex.is_common(t.fold) or t.fold in self.lex.clinical or self.lex.is_medical_proper(t.fold)
            if common:
                if t.mode != "mixed" or not t.text[0].isupper() or t.initial_pos:
                    continue
                nxt = toks[i + 1] if i + 1 < len(toks) else None
                if nxt is not None and nxt.fold in MEDICAL_FOLLOWERS:
                    continue
            out.append(Span(t.start, t.end, typ, "propagate"))
        return out

    def _eponyms(self, toks: list[Token]) -> list[tuple[int, int]]:
        """Character ranges of multi-word eponyms ("Charcot-Marie-Tooth", "Guillain Barre"):
        disease names, never a person, whatever their capitals."""
        out = []
        index = self.lex.eponyms
        for i, t in enumerate(toks):
            phrases = index.get(t.fold) if t.is_word else None
            if not phrases:
                continue
            for phrase in phrases:
                j, k, end = i, 0, t.end
                while k < len(phrase) and j < len(toks):
                    tj = toks[j]
                    if tj.text == "-" and k:
                        j += 1
                        continue
                    if not tj.is_word or tj.fold != phrase[k]:
                        break
                    end, j, k = tj.end, j + 1, k + 1
                if k == len(phrase):
                    out.append((t.start, end))
                    break
        return out

    def _finish(self, text: str, spans: list[Span], toks: list[Token] | None = None) -> list[Span]:
        if toks is not None and any(s.type in _CONTEXTUAL and s.source != "cue" for s in spans):
            ranges = self._eponyms(toks)
            if ranges:
                spans = [s for s in spans if not (s.type in _CONTEXTUAL and s.source != "cue" and any(
                    a <= s.start and s.end <= b for a, b in ranges))]
        # a month or weekday word inside a name or place is part of it ("April Jones", "Mt. Carmel")
        contextual = [s for s in spans if s.type in _CONTEXTUAL]
        if contextual:
            kept = []
            for s in spans:
                if s.type == "DATE" and not any(c.isdigit() for c in text[s.start:s.end]) and any(
                        c.start <= s.start and s.end <= c.end and c.source != "propagate" for c in contextual):
                    continue
                kept.append(s)
            spans = kept
        # a weekday is never a name or a place ("P.T. on Wed/Thurs"); the policy decides on it as a date
        spans = [s for s in spans if s.type not in _CONTEXTUAL or not _only_weekdays(text[s.start:s.end])]
        merged = merge_spans(spans, text)
        out = []
        for s in merged:
            a, b = s.start, s.end
            while a < b and not text[a].isalnum() and text[a] not in "#+('\u2019":
                a += 1
            while b > a and not text[b - 1].isalnum() and text[b - 1] not in ".)":
                b -= 1
            if b > a and any(c.isalnum() for c in text[a:b]):
                out.append(Span(a, b, s.type, s.source))
        return out


# Words of a facility's kind, not its name ("Counseling Center", "Postanesthesia Care Unit").
_GENERIC_PLACE_WORDS = frozenset("""
center centre unit care community college counseling counselling university school state county city town
postanesthesia intensive surgical medical cardiac critical emergency department dept ward floor service services
outpatient inpatient acute long term short facility home house health general regional hospital clinic
""".split())
# A learned DATE needs a date's shape: a month or weekday word, a year, or day/month/year numbers.
_DATE_SHAPE = re.compile(
    r"(?i:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec|mon|tue|wed|thu|fri|sat|sun|christmas|easter|"
    r"thanksgiving)|\b(?:19|20)\d\d\b|['\u2019]\d\d\b|\b\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}\b")
_AGE_AFTER = re.compile(r"[\s-]*(?:y/?o\b|y\.o\.|yrs?\b|years?\b|year-old|yo\b|m\b|f\b|male|female|man|woman)", re.I)
_AGE_BEFORE = re.compile(r"\b(?:age[sd]?|aged|turn(?:s|ed|ing)?|is|was|be)\s*:?\s*$", re.I)
_RANGE_WITH_UNIT = re.compile(r"[\d.,-]+\s*(?:mg|mcg|ng|g|ml|mL|cc|units?|mmhg|%|/)", re.I)
_WEEKDAY_ONLY = re.compile(r"(?:mon|tue|tues|wed|thu|thur|thurs|fri|sat|sun)(?:day)?s?|wednesdays?|"
                           r"saturdays?", re.I)  # "tues"+"day", "thurs"+"day" match the first part


_CUE_BEFORE = re.compile(r"(?:\b(?:" + "|".join(sorted(TITLES | RELATIONS)) + r")\.?|\b(?:per|by|with|called|"
                         r"paged|notified|aware|informed|spoke|to)\s+(?:dr|md|rn|np|pa)\.?)\s*[:,]?\s*$", re.I)


def _cued(text: str, start: int) -> bool:
    """A title or relative right before: "Dr. green", "wife bill", "spoke to dr pat"."""
    return bool(_CUE_BEFORE.search(text, max(0, start - 30), start))


def _installed(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _load_learned():
    """meddata's learned PHI model, or None when its module, files or spaCy are missing."""
    try:
        from meddata.filters.deid import learned
    except ImportError:
        return None
    return learned.load()


def _only_weekdays(piece: str) -> bool:
    words = re.findall(r"[A-Za-z]+", piece)
    return bool(words) and all(_WEEKDAY_ONLY.fullmatch(w) for w in words)


def _bare_year(s: str) -> bool:
    s = s.strip()
    return (len(s) == 4 and s.isdigit()) or (len(s) == 3 and s[0] in "'\u2019" and s[1:].isdigit())


def detect_texts(texts: Iterable[str], config: DetectorConfig | None = None) -> list[list[Span]]:
    """Convenience: detect in many texts with a fresh detector."""
    return Detector(config).detect_many(list(texts))
