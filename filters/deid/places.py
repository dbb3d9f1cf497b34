"""Places smaller than a state: street addresses, cities and towns, ZIP codes, care facilities.

Hospitals are found by their facility word (``... Medical Center``, ``MERCY HOSP``), by
``St./Saint/Mt.`` names and by a short list of well-known systems; towns by the GeoNames
dictionary, by ``Town, ST`` and by cues (``lives in``, ``transferred from``). States and
countries alone are not PHI under Safe Harbor; after a town they join its span.
"""

from __future__ import annotations

import bisect
import re

from meddata.filters.deid.dictionaries import MONTHS, STOPWORDS, WEEKDAYS, Lexicon
from meddata.filters.deid.names import DRUG_ENDING, MEDICAL_FOLLOWERS
from meddata.filters.deid.spans import Span
from meddata.filters.deid.tokens import Token

_CONNECTORS = frozenset("of and & the de la du".split())
_GENERIC_FACILITY = frozenset(
    ["general", "regional", "med", "health", "medical", "labs", "laboratory", "pharmacy", "radiology", "associates", "institute", "memorial",
     "children's", "manor", "pavilion", "va", "rehab", "clinic", "clinics", "hospice", "center"])
LOCATION_CUES = re.compile(
    r"(?=[a-z])(?<!\w)(?:lives|living|resides|residing|resident|moved|born|grew\s+up|native|visiting|vacation(?:ing)?|trip|"
    r"travel(?:l)?ed|returned|transferred|transfer|admitted|presented|seen|followed|works|worked|employed|retired|"
    r"home|house|town|city|village|county|located|relocated|came|comes|originally|raised|stationed|deployed|"
    r"flew|drove|hometown)\s*(?:\w+\s+){0,2}?(?:in|to|from|at|of|near|for|outside(?:\s+of)?)\s+(?:the\s+)?(?=\S)"
    r"|(?<!\w)(?:in|from|near|outside|outside\s+of|at)\s+(?=[^\W\d_])",
    re.I,
)
_STRONG_LOCATION_CUE = re.compile(r"(?:lives|living|resides|residing|moved|born|grew\s+up|native|hometown|"
                                  r"relocated|raised|originally)", re.I)
_STREET_STRONG = ("street st avenue ave road rd boulevard blvd lane ln drive dr court ct way place pl terrace ter "
                  "circle cir parkway pkwy highway hwy route rte rt square sq trail trl path pike burg").split()


_DOSE_UNITS = frozenset("mg mcg g gm kg ml cc l units unit u iu meq mmol tabs tab puffs drops gtt gtts mg/kg "
                        "mcg/kg hrs hours h min minutes days times x %".split())
_FACILITY_ACRONYM = re.compile(r"[a-z]{1,4}(?:h|mc|hc|mh)|va|vamc|vah")
# Clinical acronyms of the same shape: bleeds, hypertrophies, hormones, places in a unit.
_NOT_FACILITY_ACRONYM = frozenset(
    "ich sah sdh edh ivh iph bph lvh rvh pph dh ch nh mh oh ah eh uh ph th sh hh rh lh ugh bah nah yeah pth acth "
    "tsh fsh gh lh adh hgh crh trh gnrh ldh mch mchc bh ah wh rn mcmh nsh ssh".split()) - {"gh"}
# Address-block lines: "Denmark 35018", "Apt. 656", "4596 Tylova 285", "Ostrov nad Ohrí".
_POSTAL_LINE = re.compile(r"((?:[^\W\d_][^\W\d_.'-]*\.?[ \t]+){1,3})\d{3,6}(?:[ -]\d{2,4})?$")
# Employer cues: "works at IBM", "employed by genentech", "retired from GM", "CEO of Acme".
_EMPLOYER_CUE = re.compile(r"\b(?:(?:works?|worked|working|employed|employee|retired|job)\s+(?:at|for|by|from)"
                           r"|(?:ceo|owner)\s+of)\s+(?:the\s+)?", re.I)
_NUMBER_WORD = re.compile(r"(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|\w+teen|twenty|thirty|"
                          r"forty|fifty|sixty|seventy|eighty|ninety|hundred|thousand)")
_EMPLOYER_NOT = frozenset("home hospital school night nights days weekends local company firm office store".split())
_UNIT_LINE = re.compile(r"(?i:apt|apartment|suite|ste|unit|floor|fl|bldg|building)\.?\s*#?\s*[\w-]+$")
_STREET_LINE = re.compile(r"(?:\d{1,6}[ \t]+)?(?:[^\W\d_][\w.'\u2019-]*[ \t]+){1,4}\d{1,5}[A-Za-z]?$"
                          r"|\d{1,6}[ \t]+(?:[^\W\d_][\w.'\u2019-]*[ \t]*){1,5}$")
_TOWN_LINE = re.compile(r"(?:[^\W\d_][^\W\d_.'\u2019-]*[ \t]?){1,4}$")
_NOT_STREET_WORD = frozenset(
    "minutes minute mins min hours hour hrs hr days day weeks week months month years year yrs yr times time way "
    "mg mcg units unit tabs tab liters liter cc ml beats assist person people pack packs cigarettes drinks steps "
    "feet ft blocks stairs flights episodes".split())
_STREET_PARTICLES = frozenset("de la le del du van von st mt n s e w the".split())


def _street_words_ok(match: str, clinical: frozenset[str]) -> bool:
    """The words between the house number and the street suffix read like a street name:
    no function words ("3 WAY FOLEY IN PLACE"), no units ("45 MINUTES ... PT"), no numbers
    ("2L O2 via"), no sentence break ("40 AFTER CAPTOPRIL. PT"), not a run of clinical words
    ("4 LARGE THICK LIQ GREEN STOOLS")."""
    parts = match.split()
    middle = [p.strip(".,").lower() for p in parts[1:-1]]
    if not middle or middle[0] in _NOT_STREET_WORD or sum(w in clinical for w in middle) >= 2:
        return False
    if re.search(r"[A-Za-z]{3,}\.\s", match):
        return False
    return not any((w in STOPWORDS and w not in _STREET_PARTICLES) or any(c.isdigit() for c in w) for w in middle
                   if not re.fullmatch(r"\d+(?:st|nd|rd|th)", w))


def _caseless_address(match: str) -> bool:
    """The case-insensitive street pattern is for ALL-CAPS and lower-case text only: in mixed
    case, "1992 by the road" is not an address."""
    return not (any(c.isupper() for c in match) and any(c.islower() for c in match))


class PlaceFinder:
    def __init__(self, lex: Lexicon):
        self.lex = lex
        suffixes = sorted(lex.street_suffixes | set(_STREET_STRONG), key=len, reverse=True)
        alt = "|".join(re.escape(s) for s in suffixes)
        strong = "|".join(re.escape(s) for s in sorted(_STREET_STRONG, key=len, reverse=True))
        unit = r"(?:[,\s]+(?:apt|apartment|suite|ste|unit|#|room|rm|bldg|building|floor|fl)\.?\s*#?\s*[\w-]+)?"
        self.street_mixed = re.compile(
            r"(?=\d)\b\d{1,6}[A-Z]?[ \t]+(?:[NSEW]\.?[ \t]+)?(?:[A-Z][\w'\u2019-]*\.?[ \t]+){1,4}(?i:" + alt + r")\b\.?(?i:" + unit + ")")
        self.street_any = re.compile(
            r"(?=\d)\b\d{1,6}[a-z]?[ \t]+(?:[nsew]\.?[ \t]+)?(?:[a-z][\w'\u2019-]*\.?[ \t]+){1,3}(?:" + strong + r")\b\.?" + unit,
            re.I)
        self.pobox = re.compile(r"\bP\.?\s?O\.?\s+Box\s+\d+\b", re.I)
        self.address_label = re.compile(
            r"\b(?:home\s+address|address|addr|residence|lives\s+at|resides\s+at|residing\s+at)\s*(?:is\s*)?[:\-]?[ \t]*"
            r"(\d[^\n]{3,100}?)(?=[ \t]{2,}|\n|$|[.;]\s|\s+(?:phone|tel|fax|email|e-mail|dob|mrn|ssn)\b)", re.I)
        states = sorted(lex.states, key=len, reverse=True)
        abbr = "|".join(s for s in states if s.isupper())
        names = "|".join(re.escape(s) for s in states if not s.isupper())
        self.city_state = re.compile(
            r"(?=[A-Z])\b((?:[A-Z][A-Za-z'\u2019.-]+\s){0,2}[A-Z][A-Za-z'\u2019.-]+),?\s+(?:(" + abbr + r")\b\.?|(?i:(" + names +
            r"))\b)(?:\s+(\d{5}(?:-\d{4})?))?")
        self._city_names = {" ".join(p).replace(" . ", ". ").replace(" - ", "-") for ps in lex.cities.values() for p in ps}
        self.zip_label = re.compile(r"\b(?:zip|zip\s*code|postal\s*code)(?:\s*:|\s+is)?\s*(\d{4,5}(?:-\d{4})?)\b", re.I)
        self.unit = re.compile(r"(?:^|(?<=[\s,]))(?:apt|apartment|suite|ste|unit)\.?\s*#?\s*\d{1,5}[A-Z]?\b", re.I)

        self._facility_index: dict[str, list[tuple[str, ...]]] = {}
        for words in lex.hospital_words:
            self._facility_index.setdefault(words[0].removesuffix("'s"), []).append(words)
        region_names = [n for n in lex.states if n.islower()] + sorted(lex.countries)  # full names only
        self._regions = {}
        for name in region_names:
            words = tuple(name.lower().replace(".", " . ").split())
            self._regions.setdefault(words[0], []).append(words)
        for v in self._regions.values():
            v.sort(key=len, reverse=True)
        # "from university of maryland", "UNIV OF MASS": a university (hospital) named for a state by
        # its name or a short form the lexicon knows (Mass, Calif, Penn...), any case; postal codes
        # ("univ of MA") are too ambiguous to count
        state_names = "|".join(sorted((re.escape(n) for n in states if not n.isupper()), key=len, reverse=True))
        self.university = re.compile(r"\b(?:university|univ\.?)\s+of\s+(?:" + state_names + r")\b", re.I)
        self.room = re.compile(r"\b(?:room|rm\.?)\s*#?\s*(\d{1,4}[A-Z]?(?:-\d{1,3}[A-Z]?)?)\b(?!\s*(?:mg|ml|%))", re.I)

    def find(self, text: str, toks: list[Token]) -> list[Span]:
        spans: list[Span] = []
        spans += self._addresses(text)
        spans += self._hospitals(toks)
        spans += self._cities(toks)
        spans += self._cues(text, toks)
        spans += self._facility_acronyms(toks)
        spans += self._wards(toks)
        spans += self._employers(text, toks)
        spans += [Span(m.start(), m.end(), "HOSPITAL", "rule") for m in self.university.finditer(text)]
        if "\n" in text:
            spans += self._address_block(text)
        return spans

    def _address_block(self, text: str) -> list[Span]:
        """Postal address blocks, whatever the country: the lines above a ``Country 12345`` or
        ``State 12345`` line (street, unit, town) are all address parts."""
        lines, pos = [], 0
        for line in text.split("\n"):
            lead = len(line) - len(line.lstrip(" \t>?*-"))
            lines.append((pos + lead, line[lead:].rstrip()))
            pos += len(line) + 1
        out = []
        for n, (start, line) in enumerate(lines):
            m = _POSTAL_LINE.match(line)
            if not m or not self._is_region(m.group(1)):
                continue
            out.append(Span(start, start + len(line), "LOCATION", "rule"))
            seen = 0
            for k in range(n - 1, max(-1, n - 7), -1):
                s2, prev = lines[k]
                if not prev:
                    continue
                seen += 1
                if seen > 3:
                    break
                if not (_UNIT_LINE.match(prev) or _STREET_LINE.match(prev) or _TOWN_LINE.match(prev)):
                    break
                if _TOWN_LINE.match(prev) and all(self.lex.is_word(w) for w in prev.split()):
                    break  # "Personal Info": a heading, not a town
                out.append(Span(s2, s2 + len(prev), "LOCATION", "rule"))
        return out

    def _is_region(self, words: str) -> bool:
        w = " ".join(words.lower().split())
        return w in self.lex.countries or w in self.lex.states or words.strip() in self.lex.states

    def _facility_acronyms(self, toks: list[Token]) -> list[Span]:
        """``transferred to GH``, ``followed at gh``, ``seen by GBMC nurse``: a hospital acronym (ending
        in H, MC, HC or MH) after to/at/from/by, in any case. Clinical acronyms (ICH, SDH) are known words."""
        out = []
        for i in range(1, len(toks)):
            t = toks[i]
            prev = toks[i - 1].lower
            if prev == "the" and i >= 2:
                prev = toks[i - 2].lower  # "from the GBMC"
            if not (2 <= len(t.text) <= 5) or not t.is_word or \
                    prev not in ("to", "at", "from", "@", "by", "into", "in", "leave", "left", "leaving"):
                continue
            if t.mode == "mixed" and not (t.text.isupper() or t.text.islower()) or \
                    not _FACILITY_ACRONYM.fullmatch(t.lower):
                continue
            if t.lower in _NOT_FACILITY_ACRONYM or self.lex.is_word(t.lower) or self.lex.is_name(t.lower):
                continue
            out.append(Span(t.start, t.end, "HOSPITAL", "rule"))
        return out

    def _wards(self, toks: list[Token]) -> list[Span]:
        """``transfer to quartermain 2``, ``back to Ellison 10``: a ward, a name no word list
        knows followed by a floor number, after to/from/on/at."""
        out = []
        for i in range(1, len(toks) - 1):
            t, num = toks[i], toks[i + 1]
            if toks[i - 1].lower not in ("to", "from", "on", "at") or not t.text.isalpha() or len(t.text) < 4:
                continue
            if not (num.text.isdigit() and len(num.text) <= 2 and num.start - t.end == 1 and not num.line_first) or (
                    t.text.isupper() and len(t.text) < 6):
                continue  # "SIMV 4": an acronym and a setting
            after = toks[i + 2] if i + 2 < len(toks) else None
            if after is not None and after.start == num.end and (after.text == "-" or after.text == "." and (
                    i + 3 < len(toks) and toks[i + 3].start == after.end and toks[i + 3].text.isdigit())):
                continue  # "BEDPAN 6-8 TIMES", "droperidol 0.625"; not "quartermain 6."
            if i + 2 < len(toks) and toks[i + 2].start - num.end <= 1 and toks[i + 2].fold in _DOSE_UNITS:
                continue  # "to Lasix 40 mg": a dose
            if self.lex.is_word(t.fold) or t.fold in STOPWORDS or t.fold in MONTHS or t.fold in WEEKDAYS or \
                    DRUG_ENDING.search(t.fold):
                continue
            out.append(Span(t.start, num.end, "HOSPITAL", "rule"))
        return out

    # -- addresses ---------------------------------------------------------------------
    def _addresses(self, text: str) -> list[Span]:
        out = []
        for rx in (self.street_mixed, self.street_any, self.pobox):
            for m in rx.finditer(text):
                if rx is self.street_any and not _caseless_address(m.group()):
                    continue
                if rx is not self.pobox and not _street_words_ok(m.group(), self.lex.clinical):
                    continue
                if re.search(r"\bdr\.?$", m.group(), re.I) and re.match(r"\.?[ \t]+[A-Z]", text[m.end():m.end() + 3]):
                    continue  # "... by Dr. Brown": a title, not "Drive"
                out.append(Span(m.start(), m.end(), "LOCATION"))
        for m in self.city_state.finditer(text):
            city = m.group(1)
            words = city.split()
            # keep only the trailing capitalized words that are not clinical words ("Seen in Boston, MA")
            k = len(words)
            while k > 0 and not self.lex.is_common(words[k - 1].strip(".")) or k > 0 and self._city_word(words[k - 1]):
                k -= 1
            if k == len(words):
                continue
            abbr = m.group(2)
            if abbr and not m.group(4):
                town = " ".join(words[k:]).lower().strip(".")
                if not any(c.islower() for c in m.group()) and (
                        town not in self._city_names or "," not in text[m.end(1):m.start(2)]):
                    continue  # ALL CAPS: "FOLEY IN PLACE", "RE-ZEROED, CO": a known town and a comma, or a ZIP
                if "," not in text[m.end(1):m.start(2)] and town not in self._city_names:
                    continue  # "Medicare ID", "Boston OR": no comma, no known town
                if abbr in ("MD", "PA", "MA", "MS", "DO", "NP", "RN", "OT", "PT", "SC") and (
                        town not in self._city_names or len(words) - k == 1 and self.lex.is_name(town)):
                    continue  # "J. Smith, MD" is a credential
            start = m.start(1) + len(" ".join(words[:k])) + (1 if k else 0)
            end = m.end(4) if m.group(4) else (m.end(2) if m.group(2) else m.end(3))
            out.append(Span(start, end, "LOCATION"))
        for m in self.address_label.finditer(text):
            out.append(Span(m.start(1), m.end(1), "LOCATION"))
        for m in self.zip_label.finditer(text):
            out.append(Span(m.start(1), m.end(1), "LOCATION"))
        for m in self.room.finditer(text):
            out.append(Span(m.start(1), m.end(1), "LOCATION"))
        for m in self.unit.finditer(text):
            out.append(Span(m.start(), m.end(), "LOCATION"))
        return out

    def regions(self, toks: list[Token]) -> list[Span]:
        """States and countries (not PHI under Safe Harbor; flagged under the recall policy,
        as i2b2-style gold standards do), with a postal code right after. Capitalized in
        mixed-case text."""
        out = []
        for i, t in enumerate(toks):
            if t.lower not in self._regions or (t.mode == "mixed" and not t.text[0].isupper()):
                continue
            k = self._match_phrase(toks, i, self._regions)
            if not k:
                continue
            if k == 1 and t.lower in ("chad", "jordan", "georgia", "jersey", "guinea", "turkey", "china", "niger",
                                      "india", "mali") and (t.mode != "mixed" or self.lex.is_name(t.fold)):
                continue
            end = i + k - 1
            if end + 1 < len(toks) and toks[end + 1].text.isdigit() and len(toks[end + 1].text) in (4, 5):
                end += 1
            out.append(Span(t.start, toks[end].end, "LOCATION", "dict"))
        return out

    def _city_word(self, word: str) -> bool:
        w = word.strip(".").lower()
        return not self.lex.is_common(w) or w in self.lex.cities

    # -- facilities --------------------------------------------------------------------
    def _match_phrase(self, toks: list[Token], i: int, index: dict[str, list[tuple[str, ...]]]) -> int:
        """Length (tokens) of the longest phrase in ``index`` starting at token ``i``; 0 if none."""
        cands = index.get(toks[i].lower)
        if not cands:
            return 0
        last = len(toks)
        for phrase in cands:  # longest first; the first word already matched
            n = len(phrase)
            if i + n > last:
                continue
            k = 1
            while k < n and toks[i + k].lower == phrase[k] and toks[i + k].start - toks[i + k - 1].end <= 1 and \
                    not toks[i + k].line_first:
                k += 1
            if k == n:
                return n
        return 0

    def _facility_word_at(self, toks: list[Token], i: int) -> int:
        for words in self._facility_index.get(toks[i].fold, ()):
            n = len(words)
            if i + n <= len(toks) and all(toks[i + k].fold == words[k].removesuffix("'s") or
                                          toks[i + k].lower == words[k] for k in range(n)):
                return n
        return 0

    def _hospitals(self, toks: list[Token]) -> list[Span]:
        out: list[Span] = []
        n = len(toks)
        i = 0
        while i < n:
            t = toks[i]
            if not t.is_word:
                i += 1
                continue
            # Saint / Mount names: "St. Mary's", "Mt. Sinai", "Saint Francis"
            if t.lower in ("st", "saint", "mt", "mount", "ste") and (t.mode != "mixed" or t.text[0].isupper()):
                j = i + 1
                if j < n and toks[j].text == ".":
                    j += 1
                if j < n and toks[j].is_word and (toks[j].mode != "mixed" or toks[j].text[0].isupper()) and \
                        toks[j].fold not in STOPWORDS and toks[j].fold not in MONTHS:
                    end = j
                    if t.mode != "mixed" and t.lower == "st" and not toks[j].lower.endswith("'s") and not (
                            end + 1 < n and self._facility_word_at(toks, end + 1)):
                        i += 1
                        continue  # "st" is also "street"
                    nxt = end + 1
                    if nxt < n and toks[nxt].fold in self.lex.street_suffixes and not self._facility_word_at(toks, nxt):
                        i += 1
                        continue  # "St. Paul Street" is an address (found elsewhere)
                    k = self._facility_word_at(toks, nxt) if nxt < n else 0
                    last = nxt + k - 1 if k else end
                    typ = "HOSPITAL" if (k or toks[end].lower.endswith("'s") or t.lower in ("mt", "mount")) else "LOCATION"
                    out.append(Span(t.start, toks[last].end, typ, "rule"))
                    i = last + 1
                    continue
            k = self._facility_word_at(toks, i) if t.fold in self._facility_index else 0
            if k:
                span = self._facility_name(toks, i, k)
                if span:
                    out.append(span)
                i += k
                continue
            k = self._match_phrase(toks, i, self.lex.hospitals) if t.lower in self.lex.hospitals else 0
            if k:
                phrase_ok = t.mode != "mixed" or t.text[0].isupper() or k >= 2 and (
                    i + k < n and self._facility_word_at(toks, i + k)
                    or i and toks[i - 1].lower in ("at", "to", "from", "(", "@"))  # "rehab(sacred heart Memorial)"
                if k == 1 and phrase_ok:
                    prev = toks[i - 1].lower if i else ""
                    phrase_ok = prev in ("at", "to", "from", "in", "of", "@") or (
                        t.mode == "mixed" and not self.lex.is_common(t.fold) and not t.initial_pos)
                if phrase_ok:
                    out.append(Span(t.start, toks[i + k - 1].end, "HOSPITAL", "dict"))
                    i += k
                    continue
            i += 1
        return out

    def _name_word(self, tok: Token) -> bool:
        if not tok.is_word or tok.text[-1].isdigit():
            return False  # "S1S2. PPx4. Labs" is not a facility name
        if tok.mode == "mixed":
            return tok.text[0].isupper() or tok.text[0].isdigit()
        return tok.fold not in STOPWORDS and tok.fold not in MONTHS and tok.fold not in WEEKDAYS

    def _facility_name(self, toks: list[Token], i: int, k: int) -> Span | None:
        """Extend a facility word backwards over the name ("Mercy", "St. Elizabeth's",
        "University of Chicago") and forwards over "of X"."""
        head = toks[i]
        if head.mode == "mixed" and not head.text[0].isupper():
            # "at reisterstown hospital": written without capitals, the name is a word no list knows
            prev = toks[i - 1] if i else None
            if head.lower not in ("hospital", "hosp", "clinic", "infirmary", "hospice") or prev is None or not prev.text.isalpha() or prev.start == 0 or prev.end + 1 != head.start or \
                    len(prev.text) < 4 or self.lex.is_word(prev.fold) or self.lex.is_name(prev.fold):
                return None
            return Span(prev.start, toks[i + k - 1].end, "HOSPITAL", "rule")
        a = i
        j = i - 1
        while j >= 0 and i - j <= 6:
            tj = toks[j]
            if toks[j + 1].start - tj.end > 1 or "\n" in tj.text or toks[j + 1].initial_pos:
                break  # a name never reaches back over a line or sentence start ("SpO2 91% RA\nGeneral:")
            if tj.text in (".", "-", "'", "&") and j - 1 >= 0:
                j -= 1
                continue
            if tj.lower in _CONNECTORS and j - 1 >= 0 and self._name_word(toks[j - 1]) and tj.lower != "the":
                j -= 1
                continue
            if self._name_word(tj) and not (tj.mode != "mixed" and len(tj.text) == 1) and not (
                    tj.mode != "mixed" and tj.fold in self.lex.clinical and
                                            tj.fold not in self.lex.first and tj.fold not in self.lex.last):
                a = j
                j -= 1
                continue
            break
        while a < i and (toks[a].lower in _CONNECTORS or not toks[a].is_word):
            a += 1
        b = i + k - 1
        # "... Hospital of the University of Pennsylvania"
        j = b + 1
        if j + 1 < len(toks) and toks[j].lower == "of":
            jj = j + 1
            if toks[jj].lower == "the":
                jj += 1
            while jj < len(toks) and self._name_word(toks[jj]) and toks[jj].mode == "mixed":
                b = jj
                jj += 1
                if jj < len(toks) and toks[jj].lower == "of":
                    jj += 1
        name_words = [t for t in toks[a:i] if t.is_word and t.lower not in _CONNECTORS]
        if not name_words and b == i + k - 1:
            return None
        distinctive = [t for t in name_words if not (t.fold in self.lex.clinical and t.fold not in self.lex.first
                                                    and t.fold not in self.lex.last and t.fold not in self.lex.cities)]
        words = " ".join(toks[x].lower for x in range(i, i + k))
        if not distinctive and b == i + k - 1:
            return None  # "Cardiology Clinic", "Emergency Medical"
        if words in _GENERIC_FACILITY and len(distinctive) < 1:
            return None
        if words in ("health", "medical", "med", "labs", "laboratory", "pharmacy", "radiology", "associates") and (
                head.mode != "mixed"):
            return None  # too generic without capitals to lean on
        return Span(toks[a].start if name_words else head.start, toks[b].end, "HOSPITAL", "rule")

    # -- towns -------------------------------------------------------------------------
    def _cities(self, toks: list[Token]) -> list[Span]:
        out = []
        n = len(toks)
        i = 0
        while i < n:
            t = toks[i]
            if not t.is_word or (t.mode == "mixed" and not t.text[0].isupper()):
                i += 1
                continue
            k = self._match_phrase(toks, i, self.lex.cities) if t.lower in self.lex.cities else 0
            if not k:
                i += 1
                continue
            words = [toks[x] for x in range(i, i + k) if toks[x].is_word]
            phrase = " ".join(w.lower for w in words)
            if phrase in self.lex.states or phrase in self.lex.countries or (t.text.isupper() and len(t.text) <= 3
                                                                              and t.mode == "mixed"):
                i += k
                continue
            prev = toks[i - 1].lower if i else ""
            prep = prev in ("in", "from", "to", "near", "at", "of", "outside", "visiting", "toward", "towards")
            nxt = toks[i + k] if i + k < n else None
            state_after = nxt is not None and nxt.text == "," and i + k + 1 < n and (
                toks[i + k + 1].text in self.lex.states or toks[i + k + 1].lower in self.lex.states)
            ambiguous = all(w.fold in self.lex.ambiguous_places or self.lex.is_common(w.fold) for w in words)
            if nxt is not None and nxt.fold in MEDICAL_FOLLOWERS:
                i += k
                continue  # "pouch of Douglas" is anatomy: "DOUGLAS POUCH"
            if t.mode == "mixed":
                caps = all(w.text[0].isupper() for w in words if w.lower not in _CONNECTORS)
                ok = caps and (not ambiguous and (len(words) > 1 or not t.initial_pos or not self.lex.is_common(t.fold))
                               or (prep or state_after) and not t.initial_pos)
                if ok and len(words) == 1 and (self.lex.is_medical_proper(t.fold) or t.fold in self.lex.clinical):
                    ok = state_after
                if ok and len(words) == 1 and self.lex.is_name(t.fold) and not (prep or state_after):
                    ok = False  # "Alice", "Smith": judged as names
            else:
                known = (phrase in self.lex.big_cities and not (len(words) == 1 and self.lex.is_word(t.fold))
                         or len(words) > 1 and not any(self.lex.is_word(w.fold) for w in words))
                ok = (not ambiguous and known) or state_after or (prep and not ambiguous)
                if ok and len(words) == 1 and self.lex.is_name(t.fold) and not (prep or state_after):
                    ok = False  # a bare surname in caps text is judged as a name, not a town
            if ok:
                out.append(Span(t.start, toks[i + k - 1].end, "LOCATION", "dict"))
            i += k
        return out

    def _employers(self, text: str, toks: list[Token]) -> list[Span]:
        """The employer after "works at", "employed by", "retired from", "CEO of": a named
        company ("IBM", "genentech") identifies as much as a town, in any case. Ordinary words
        ("works at home", "works for the city") are not names and end the run."""
        out = []
        starts = [t.start for t in toks]
        for m in _EMPLOYER_CUE.finditer(text):
            i = bisect.bisect_left(starts, m.end())
            words: list[int] = []
            while i < len(toks) and len(words) < 3:
                t = toks[i]
                if words and (t.start - toks[i - 1].end > 1 or t.line_first):
                    break
                if not t.is_word or not t.text.replace("&", "").replace("'", "").isalpha() or len(t.text) < 2:
                    break
                w = t.fold
                if w in STOPWORDS or w in MONTHS or w in WEEKDAYS or w in self.lex.clinical or \
                        self.lex.is_common(w) or w in _EMPLOYER_NOT or _NUMBER_WORD.fullmatch(w):
                    break
                words.append(i)
                i += 1
            if words:
                out.append(Span(toks[words[0]].start, toks[words[-1]].end, "LOCATION", "cue"))
        return out

    def _cues(self, text: str, toks: list[Token]) -> list[Span]:
        out = []
        starts = [t.start for t in toks]
        for m in LOCATION_CUES.finditer(text):
            i = bisect.bisect_left(starts, m.end())
            if i >= len(toks):
                continue
            strong = bool(_STRONG_LOCATION_CUE.match(m.group()))
            j = i
            words = []
            while j < len(toks) and len(words) < 4:
                t = toks[j]
                if words and (t.start - toks[j - 1].end > 1 or t.line_first):
                    break
                if t.text in ("-", ".", "'") and words:
                    j += 1
                    continue
                if not t.is_word or not t.text.replace("'", "").replace("\u2019", "").isalpha() or \
                        len(t.text) == 1 and not words:
                    break  # "in FiO2", "in B/P"
                if t.mode == "mixed":
                    if not t.text[0].isupper():
                        if t.lower in ("of",) and words:
                            j += 1
                            continue
                        break
                    acronym = t.text.isupper() and len(t.text) <= 4
                    if acronym and not words and t.text.isalpha() and len(t.text) >= 2 and (
                            strong or m.group().split()[-1].lower() in ("at", "from", "to")) and \
                            t.fold not in self.lex.clinical and not self.lex.is_medical_proper(t.fold):
                        words.append(j)  # "at UWMC", "from NYC"
                        j += 1
                        continue
                    if not strong and not words and t.fold in self.lex.first:
                        break  # "in John's notes": the name rules judge first names
                    if self.lex.is_common(t.fold) or self.lex.is_medical_proper(t.fold) or acronym:
                        if not (t.fold in self.lex.cities or self.lex.is_name(t.fold)) or t.fold in STOPWORDS or \
                                t.fold in MONTHS or t.fold in WEEKDAYS or t.fold in self.lex.clinical:
                            break
                else:
                    if not strong or self.lex.is_common(t.fold) or t.fold in STOPWORDS:
                        break
                words.append(j)
                j += 1
            if not words:
                continue
            phrase = " ".join(toks[k].lower for k in words)
            if phrase in self.lex.states or phrase in self.lex.countries:
                continue
            if toks[words[0]].mode == "mixed" and not strong and len(words) == 1 and \
                    self.lex.is_common(toks[words[0]].fold):
                continue
            out.append(Span(toks[words[0]].start, toks[words[-1]].end, "LOCATION", "cue" if strong else "dict"))
        return out
