"""Name, place and hospital dictionaries shipped as data (see ``data/SOURCES.md``).

Loaded once per process and shared; every lookup is on lower-cased words. A word can be in
several lists: ``Jackson`` is a first name, a surname and a city. ``ambiguous`` marks names
that are also everyday or clinical words (``Brown``, ``Rose``, ``Mark``): those need context
(capitalisation mid-sentence, a neighbouring name, a cue) before they count as PHI.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

DATA = Path(__file__).parent / "data"

MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
          "november", "december")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
# Words that are never part of a name even when capitalized (function words, titles, headings).
STOPWORDS = frozenset("""
a an the and or but nor of to in on at by for from with without into onto upon over under about after before
during since until via per than then that this these those there here his her hers him he she they them their
we us our you your i me my it its is was were be been being are am has have had do does did done not no yes
as so if when while where who whom whose which what why how all any each every some most more less very also
again once only just still even ever please pt pts patient patients mr mrs ms dr drs md do rn np pa phd
doctor nurse attending resident fellow intern physician provider surgeon staff team service unit floor
note notes visit appt appointment office clinic call called phone family name date day days week weeks
month months year years today tonight tomorrow yesterday morning afternoon evening night am pm noon
""".split())


# surnames.txt.gz holds the census list (frequency order) first, then other locales' names.
CENSUS_SURNAMES = 88799
FREQUENT_SURNAMES = 20000


_INFLECTIONS = (("s", ""), ("es", ""), ("ed", ""), ("ed", "e"), ("d", ""), ("ing", ""), ("ing", "e"), ("ies", "y"),
                ("ied", "y"))


def _lines(name: str) -> list[str]:
    path = DATA / name
    opener = gzip.open if name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return [ln.strip() for ln in fh if ln.strip() and not ln.startswith("#")]


def _fold(word: str) -> str:
    w = word.lower().replace("\u2019", "'")
    return w[:-2] if w.endswith("'s") else w


@dataclass
class Lexicon:
    first: frozenset[str]
    last: frozenset[str]
    ambiguous: frozenset[str]
    clinical: frozenset[str]          # frequent lower-case or abbreviation words in real notes
    clinical_proper: frozenset[str]   # drugs, eponyms, instruments capitalized in real notes
    stoplist: frozenset[str]          # curated medical eponyms and brand names
    cities: dict[str, list[tuple[str, ...]]]  # first word -> candidate word tuples (lower)
    ambiguous_places: frozenset[str]
    states: dict[str, str]            # abbreviation or lower-case name -> abbreviation
    countries: frozenset[str]
    hospital_words: tuple[tuple[str, ...], ...]  # longest first
    hospitals: dict[str, list[tuple[str, ...]]]
    street_suffixes: frozenset[str]
    frequent_last: frozenset[str] = field(default=frozenset())
    big_cities: frozenset[str] = field(default=frozenset())   # known without context, even lower-case
    english: frozenset[str] = field(default=frozenset())      # everyday words that are not names
    medical: frozenset[str] = field(default=frozenset())      # drug, abbreviation and ICD-10-CM words
    eponyms: dict[str, list[tuple[str, ...]]] = field(default_factory=dict)  # "charcot marie", "guillain barre"
    surname_words: frozenset[str] = field(default=frozenset())  # surnames that are everyday words ("custard")
    surrogate_first: tuple[str, ...] = field(default=())
    surrogate_last: tuple[str, ...] = field(default=())
    surrogate_cities: tuple[str, ...] = field(default=())

    def is_name(self, word: str) -> bool:
        w = _fold(word)
        return w in self.first or w in self.last

    def is_frequent_name(self, word: str) -> bool:
        """A first name, or a surname in the frequent part of the census list: rare census
        surnames include words like "Query" and "Current", which need more evidence."""
        w = _fold(word)
        return w in self.first or w in self.frequent_last

    def is_common(self, word: str) -> bool:
        """An everyday or clinical word that happens to be a name (needs context)."""
        w = _fold(word)
        return w in self.ambiguous or w in self.clinical or w in STOPWORDS or w in MONTHS or w in WEEKDAYS

    def is_word(self, word: str) -> bool:
        """A known everyday, clinical or medical word (not a name): capitalized, it is a heading."""
        w = _fold(word)
        if w in self.english or w in self.clinical or w in STOPWORDS or self.is_medical_proper(w):
            return True
        # inflected forms the word lists lack: "settles", "sedated", "maps", "suctioning"
        for suffix, add in _INFLECTIONS:
            if w.endswith(suffix) and len(w) - len(suffix) >= 3:
                stem = w[: len(w) - len(suffix)] + add
                if stem in self.english or stem in self.clinical:
                    return True
        return False

    def is_medical_proper(self, word: str) -> bool:
        """A drug, brand, eponym, abbreviation or disease word: not a name without a cue."""
        w = _fold(word)
        return w in self.stoplist or w in self.clinical_proper or w in self.medical


def _phrase_index(phrases: list[str]) -> dict[str, list[tuple[str, ...]]]:
    index: dict[str, list[tuple[str, ...]]] = {}
    for p in phrases:
        words = tuple(p.lower().replace("-", " - ").replace(".", " . ").split())
        if words:
            index.setdefault(words[0], []).append(words)
    for v in index.values():
        v.sort(key=len, reverse=True)
    return index


CACHE_VERSION = 1  # bump when Lexicon's fields or their derivation change


def cache_dir() -> Path:
    """Where compiled word sets are kept between runs: ``$MEDDATA_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/meddata``, else ``~/.cache/meddata``. Only public dictionaries go here."""
    env = os.environ.get("MEDDATA_CACHE_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "meddata"


def _data_key() -> str:
    digest = hashlib.sha256(f"{CACHE_VERSION}".encode())
    for path in sorted(DATA.iterdir()):
        if path.is_file() and path.suffix in (".txt", ".gz", ".tsv"):
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:20]


@lru_cache(maxsize=1)
def lexicon() -> Lexicon:
    """The shared dictionaries, once per process: read from the user cache (about 0.1 s) or
    built from the word lists (about 1 s) and cached for the next run. The cache is keyed by
    the lists' content, so an edited list is never shadowed by a stale cache."""
    path = cache_dir() / f"deid-lexicon-{_data_key()}.pickle"
    try:
        with path.open("rb") as fh:
            lex = pickle.load(fh)  # noqa: S301 - our own file, written below from shipped word lists
        if isinstance(lex, Lexicon):
            return lex
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, TypeError):
        pass
    lex = _build_lexicon()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        with tmp.open("wb") as fh:
            pickle.dump(lex, fh, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(path)
    except OSError:
        pass  # a read-only home: build again next time
    return lex


def _build_lexicon() -> Lexicon:
    first_raw = _lines("first_names.txt")
    last_raw = _lines("surnames.txt.gz")
    first = frozenset(w.lower() for w in first_raw)
    last = frozenset(w.lower() for w in last_raw)
    city_pop = {}
    for line in _lines("cities_us.txt"):
        name, _, pop = line.partition("\t")
        city_pop[name] = int(pop or 0)
    cities_us = list(city_pop)
    world = _lines("cities_world.txt")
    cities = world + cities_us
    big = {c.lower() for c, p in city_pop.items() if p >= 50_000} | {c.lower() for c in world}
    states: dict[str, str] = {}
    for line in _lines("us_states.tsv"):
        abbr, name = line.split("\t")
        states[abbr] = abbr
        states[name.lower()] = abbr
    states.update({"DC": "DC", "district of columbia": "DC", "PR": "PR", "puerto rico": "PR", "Mass": "MA",
                   "Calif": "CA", "Fla": "FL", "Penn": "PA", "Conn": "CT"})
    hw = sorted((tuple(w.lower().split()) for w in _lines("hospital_words.txt")), key=len, reverse=True)
    clinical = frozenset(_lines("clinical_vocab.txt")) | frozenset(_lines("nursing_shorthand.txt"))
    proper = frozenset(_lines("clinical_proper.txt")) - first - frozenset(c.lower() for c in cities_us)
    # Surrogate pools: common, unambiguous names and real towns, so fakes read naturally.
    amb = frozenset(_lines("ambiguous_names.txt"))
    sur_first = tuple(w for w in first_raw[:6000] if w.lower() not in amb and w.isalpha() and len(w) > 2)
    sur_last = tuple(w for w in last_raw[:5000] if w.lower() not in amb and w.isalpha() and len(w) > 2)
    sur_cities = tuple(c for c in cities_us if c.replace(" ", "").isalpha() and c.lower() not in amb)
    # a town or country named in a disease ("Lyme", "Boston exanthem") is still a place
    medical = frozenset(_lines("medical_terms.txt.gz")) - first - big - {c.lower() for c in cities_us} - frozenset(
        states) - frozenset(c.lower() for c in _lines("countries.txt"))
    return Lexicon(
        first=first, last=last, ambiguous=amb, clinical=clinical, clinical_proper=proper,
        stoplist=frozenset(_lines("medical_stoplist.txt")),
        cities=_phrase_index(cities),
        ambiguous_places=frozenset(_lines("ambiguous_places.txt")) | clinical | proper,
        states=states,
        countries=frozenset(c.lower() for c in _lines("countries.txt")),
        hospital_words=tuple(hw),
        hospitals=_phrase_index(_lines("hospitals.txt")),
        street_suffixes=frozenset(s.lower() for s in _lines("street_suffixes.txt")),
        big_cities=frozenset(big),
        english=frozenset(_lines("english_words.txt.gz")),
        medical=medical,
        eponyms=_phrase_index(_lines("eponyms.txt")),
        surname_words=frozenset(_lines("surname_words.txt")),
        frequent_last=frozenset(w.lower() for w in last_raw[:FREQUENT_SURNAMES]) | frozenset(
            w.lower() for w in last_raw[CENSUS_SURNAMES:]),
        surrogate_first=sur_first, surrogate_last=sur_last, surrogate_cities=sur_cities,
    )
