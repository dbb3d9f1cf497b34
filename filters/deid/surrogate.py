"""Realistic, format-preserving surrogates for detected PHI.

Every choice is a keyed HMAC of the original value, so the same original always maps to the
same surrogate under the same key (across records and runs) and nothing maps back: no table
of real values is stored. Dates move by one offset per patient (a whole number of weeks when
weekdays must be kept), so intervals survive; ages over 89 become ``90+``. A surrogate never
equals a real value found in the same note.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
from collections.abc import Iterable
from datetime import date, timedelta

from meddata.filters.deid.dictionaries import Lexicon, lexicon
from meddata.filters.deid.patterns import age_value

logger = logging.getLogger("meddata.deid")

DEFAULT_KEY_ENV = "MEDDATA_DEID_KEY"
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"]
_WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
_MONTH_IDX = {m.lower(): i + 1 for i, m in enumerate(_MONTHS)}
_MONTH_IDX.update({m[:3].lower(): i + 1 for i, m in enumerate(_MONTHS)})
_MONTH_IDX["sept"] = 9
_WEEKDAY_IDX = {d.lower(): i for i, d in enumerate(_WEEKDAYS)}
_WEEKDAY_IDX.update({d[:3].lower(): i for i, d in enumerate(_WEEKDAYS)})
_WEEKDAY_IDX.update({"tues": 1, "thur": 3, "thurs": 3})
_KEEP_WORDS = re.compile(
    r"^(?:hospital|hosp|medical|med|center|centre|ctr|clinic|clinics|health|healthcare|care|system|services|"
    r"infirmary|hospice|nursing|home|facility|rehabilitation|rehab|surgical|surgery|cancer|heart|institute|"
    r"children's|memorial|general|regional|community|university|pavilion|manor|assisted|living|urgent|group|"
    r"associates|family|practice|medicine|st|saint|mt|mount|of|the|and|&|va|apt|apartment|suite|ste|unit|"
    r"room|rm|box|po|p|o|n|s|e|w|street|st|avenue|ave|road|rd|boulevard|blvd|lane|ln|drive|dr|court|ct|way|"
    r"place|pl|terrace|circle|parkway|highway|hwy|route|square|trail|path)$", re.I)
_DEFAULT_SHIFT = (400, 3650)


def key_from_env(env_name: str = DEFAULT_KEY_ENV) -> tuple[bytes, bool]:
    """(key, persistent). Without the variable a random per-process key is used: surrogates
    are then consistent within the run only."""
    value = os.environ.get(env_name)
    if value:
        return value.encode("utf-8"), True
    return os.urandom(32), False


def _shape(template: str, word: str) -> str:
    """Give ``word`` the letter case of ``template`` (ALL CAPS, lower, Title)."""
    if template.isupper() and len(template) > 1:
        return word.upper()
    if template.islower():
        return word.lower()
    return word[:1].upper() + word[1:]


class Surrogates:
    """Surrogate generator for one patient (``scope``) under one key.

    ``forbidden``: lower-cased real values and words of the current note; never produced.
    """

    def __init__(self, key: bytes, scope: str = "", *, keep_weekday: bool = False,
                 shift_days: tuple[int, int] = _DEFAULT_SHIFT, lex: Lexicon | None = None):
        self.key = key
        self.scope = scope
        self.lex = lex or lexicon()
        self.forbidden: set[str] = set()
        lo, hi = shift_days
        h = self._int("date-shift", scope)
        days = lo + h % (hi - lo + 1)
        if keep_weekday:
            days -= days % 7 or 0
            days = max(days, 7)
        self.offset = timedelta(days=days if (h >> 40) % 2 else -days)

    def forbid(self, values: Iterable[str]) -> None:
        for v in values:
            self.forbidden.add(v.lower())
            self.forbidden.update(w.lower() for w in re.findall(r"[^\W\d_]+", v) if len(w) > 2)

    # -- hashing -------------------------------------------------------------------------
    def _int(self, *parts: str) -> int:
        msg = "\x1f".join(parts).encode("utf-8")
        return int.from_bytes(hmac.new(self.key, msg, hashlib.sha256).digest()[:8], "big")

    def _pick(self, pool: tuple[str, ...] | list[str], *parts: str) -> str:
        for attempt in range(20):
            choice = pool[self._int(*parts, str(attempt)) % len(pool)]
            if choice.lower() not in self.forbidden:
                return choice
        return choice

    def _digits(self, s: str, *parts: str) -> str:
        """Same shape, other digits (and letters): ``(617) 555-1234`` -> ``(842) 309-7716``."""
        for attempt in range(20):
            h = hashlib.sha256(hmac.new(self.key, "\x1f".join((*parts, s, str(attempt))).encode(), "sha256").digest())
            stream = h.digest() * 4
            out = []
            for i, c in enumerate(s):
                b = stream[i % len(stream)]
                if c.isdigit():
                    out.append(str(b % 10))
                elif c.isalpha() and c.isascii():
                    letter = chr(ord("A") + b % 26)
                    out.append(letter if c.isupper() else letter.lower())
                else:
                    out.append(c)
            fake = "".join(out)
            if fake.lower() not in self.forbidden and fake != s:
                return fake
        return fake

    # -- per type ------------------------------------------------------------------------
    def replace(self, type_: str, original: str) -> str:
        fn = getattr(self, f"_{type_.lower()}", None)
        return fn(original) if fn else f"[{type_}]"

    def _name(self, s: str) -> str:
        def word(m: re.Match) -> str:
            w = m.group()
            low = w.lower().replace("\u2019", "'")
            if len(w) == 1 or (len(w) <= 3 and low not in self.lex.first and low not in self.lex.last):
                return self._digits(w, "initial")  # initials: other letters
            base = low[:-2] if low.endswith("'s") else low
            poss = w[len(base):] if low.endswith("'s") else ""
            pool = self.lex.surrogate_first if base in self.lex.first and base not in self.lex.frequent_last \
                else self.lex.surrogate_last
            return _shape(w, self._pick(pool, "name", base)) + poss
        out = re.sub(r"[^\W\d_]+(?:['\u2019][^\W\d_]+)*", word, s)
        return re.sub(r"\d+", lambda m: self._digits(m.group(), "num"), out)

    def _location(self, s: str) -> str:
        low = s.lower().strip()
        if low in self.lex.states:
            abbrs = sorted({v for v in self.lex.states.values()})
            new = self._pick(abbrs, "state", low)
            if s.isupper() and len(s) == 2:
                return new
            names = {v: k for k, v in self.lex.states.items() if not k.isupper()}
            return _shape(s, names.get(new, new).title())
        if not any(c.isdigit() for c in s) and low in self._city_set():
            return _shape(s, self._pick(self.lex.surrogate_cities, "city", low))

        def word(m: re.Match) -> str:
            w = m.group()
            if w.isdigit():
                return self._digits(w, "num")
            if _KEEP_WORDS.match(w) or w in self.lex.states:
                return w
            if w.lower() in self._city_set():
                return _shape(w, self._pick(self.lex.surrogate_cities, "city", w.lower()))
            return _shape(w, self._pick(self.lex.surrogate_last, "place", w.lower()))
        return re.sub(r"[^\W_]+(?:['\u2019][^\W_]+)*", word, s)

    def _city_set(self) -> set[str]:
        if not hasattr(self, "_cities"):
            self._cities = {" ".join(p).replace(" . ", ". ").replace(" - ", "-")
                            for ps in self.lex.cities.values() for p in ps}
        return self._cities

    def _hospital(self, s: str) -> str:
        def word(m: re.Match) -> str:
            w = m.group()
            if w.isdigit():
                return self._digits(w, "num")
            if _KEEP_WORDS.match(w.rstrip("'s")) or _KEEP_WORDS.match(w):
                return w
            poss = "'s" if w.lower().endswith("'s") else ""
            base = w[:-2] if poss else w
            return _shape(base, self._pick(self.lex.surrogate_last, "facility", base.lower())) + poss
        return re.sub(r"\d+|[^\W\d_]+(?:['\u2019][^\W\d_]+)*", word, s)

    def _age(self, s: str) -> str:
        value = age_value(s)
        if value is not None and value > 89:
            return "90+"
        return s  # ages up to 89 are not identifying under Safe Harbor

    def _phone(self, s: str) -> str:
        fake = self._digits(s, "phone")
        if s.startswith("+1"):
            fake = "+1" + fake[2:]
        # keep it dialable-looking: area codes and exchanges do not start with 0 or 1
        return re.sub(r"(?<!\d)[01](?=\d{2}\D{0,2}\d{3}\D?\d{4})", lambda m: str(2 + int(m.group()) * 3), fake)

    def _email(self, s: str) -> str:
        first = self._pick(self.lex.surrogate_first, "email-first", s.lower()).lower()
        last = self._pick(self.lex.surrogate_last, "email-last", s.lower()).lower()
        return f"{first}.{last}@example.org"

    def _ssn(self, s: str) -> str:
        fake = self._digits(s, "ssn")
        return re.sub(r"^\d", "9", fake)  # 9xx: never issued, so clearly not a real SSN

    def _mrn(self, s: str) -> str:
        return self._digits(s, "mrn")

    def _id(self, s: str) -> str:
        return self._digits(s, "id")

    def _url(self, s: str) -> str:
        n = self._int("url", s.lower()) % 10000
        scheme = re.match(r"^(?:https?://|ftp://)?(?:www\.)?", s, re.I).group()
        return f"{scheme}example{n}.org"

    def _ip(self, s: str) -> str:
        h = self._int("ip", s)
        if ":" in s:
            return f"2001:db8::{h % 65536:x}"
        return f"192.0.2.{h % 254 + 1}"  # TEST-NET-1, reserved for documentation

    def _biometric(self, s: str) -> str:
        return "[BIOMETRIC]"

    def _date(self, s: str) -> str:
        out = shift_date(s, self.offset, self._int("holiday", s.lower()))
        return out if out is not None else "[DATE]"


def _year(y: str, shifted: int) -> str:
    if len(y) == 2:
        return f"{shifted % 100:02d}"
    return str(shifted)


def _fmt_num(template: str, value: int) -> str:
    """``value`` as wide as ``template`` ("07" -> "08", "11" -> "05", "7" -> "8")."""
    return f"{value:02d}" if len(template) == 2 else str(value)


def _safe(y: int, m: int, d: int) -> date:
    while True:
        try:
            return date(y, m, d)
        except ValueError:
            d -= 1


def shift_date(s: str, offset: timedelta, salt: int = 0) -> str | None:
    """Shift a date expression by ``offset`` keeping its shape; None when it cannot be read."""
    t = s.strip()
    ref_year = 2001
    m = re.fullmatch(r"((?:19|20|21)\d\d)([-/.])(\d{1,2})\2(\d{1,2})(T.*)?", t)
    if m:
        d = _safe(int(m.group(1)), int(m.group(3)), int(m.group(4))) + offset
        sep = m.group(2)
        return f"{d.year}{sep}{_fmt_num(m.group(3), d.month)}{sep}{_fmt_num(m.group(4), d.day)}"
    m = re.fullmatch(r"(\d{1,2})([-/.])(\d{1,2})(?:\2(\d{2}|\d{4}))?", t)
    if m:
        a, b, y = int(m.group(1)), int(m.group(3)), m.group(4)
        month, day = (a, b) if a <= 12 else (b, a)
        year = int(y) if y and len(y) == 4 else (2000 + int(y) if y and int(y) < 40 else 1900 + int(y) if y else ref_year)
        if month > 12 or day > 31:
            return None
        d = _safe(year, month, day) + offset
        first, second = (d.month, d.day) if a <= 12 else (d.day, d.month)
        out = f"{_fmt_num(m.group(1), first)}{m.group(2)}{_fmt_num(m.group(3), second)}"
        return out + (f"{m.group(2)}{_year(y, d.year)}" if y else "")
    m = re.fullmatch(r"(\d{1,2})/((?:19|20)\d\d)", t)
    if m:
        d = _safe(int(m.group(2)), int(m.group(1)), 15) + offset
        return f"{_fmt_num(m.group(1), d.month)}/{d.year}"
    m = re.fullmatch(r"((?:19|20|21)\d\d)", t)
    if m:
        return str((_safe(int(t), 7, 1) + offset).year)
    m = re.fullmatch(r"['\u2019](\d\d)", t)
    if m:
        y = int(m.group(1))
        full = 2000 + y if y < 40 else 1900 + y
        return f"{t[0]}{(_safe(full, 7, 1) + offset).year % 100:02d}"
    low = t.lower().rstrip(".s")
    if low in _WEEKDAY_IDX:
        new = _WEEKDAYS[(_WEEKDAY_IDX[low] + offset.days) % 7]
        return _shape(t, new if len(t) > 4 else new[:3])
    # month-name dates: "July 22nd, 1992", "22-Jul-92", "Jul 22", "22 July", "July 2019", "March"
    words = re.findall(r"[A-Za-z]+|\d+|['\u2019]\d\d", t)
    month_i = next((i for i, w in enumerate(words) if w.lower().rstrip(".") in _MONTH_IDX), None)
    if month_i is None:
        return None
    mword = words[month_i]
    month = _MONTH_IDX[mword.lower()]
    nums = [w for w in words if w[0].isdigit() or w[0] in "'\u2019"]
    day = next((int(n) for n in nums if n.isdigit() and len(n) <= 2 and 1 <= int(n) <= 31 and not (
        len(nums) >= 2 and n == nums[-1] and len(nums[-1]) == 2 and words.index(n) > month_i + 1)), None)
    year_tok = next((n for n in nums if len(n) == 4 or n[0] in "'\u2019" or (
        len(n) == 2 and n == nums[-1] and len(nums) >= 2)), None)
    year = ref_year
    if year_tok:
        yv = int(year_tok.lstrip("'\u2019"))
        year = yv if yv > 999 else (2000 + yv if yv < 40 else 1900 + yv)
    d = _safe(year, month, day or 15) + offset
    new_month = _MONTHS[d.month - 1]
    new_mword = new_month if len(mword.rstrip(".")) > 3 and mword.lower() != "sept" else new_month[:3]
    new_mword = _shape(mword, new_mword)
    out = t
    out = re.sub(re.escape(mword), new_mword, out, count=1)
    if day is not None:
        out = re.sub(rf"(?<!\d){day:d}(?=st|nd|rd|th|\b|\D|$)|(?<!\d)0{day:d}(?!\d)",
                     lambda mm: (f"{d.day:02d}" if mm.group().startswith("0") else str(d.day)), out, count=1)
        out = re.sub(r"(?<=\d)(st|nd|rd|th)", lambda mm: _ordinal(d.day, mm.group()), out, count=1)
    if year_tok:
        new_y = str(d.year) if len(year_tok) == 4 else f"{d.year % 100:02d}"
        if year_tok[0] in "'\u2019":
            new_y = year_tok[0] + f"{d.year % 100:02d}"
        out = out[::-1].replace(year_tok[::-1], new_y[::-1], 1)[::-1]
    return out


def _ordinal(n: int, template: str) -> str:
    suffix = "th" if 11 <= n % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return suffix.upper() if template.isupper() else suffix
