"""Regular-expression rules for the structured Safe Harbor identifiers.

One combined, compiled pattern per family (dates, phones, ids, ...), built once at import.
Each family returns :class:`~meddata.filters.deid.spans.Span` objects; context checks that a
regex cannot express (is ``5/5`` a date or motor strength?) live next to the pattern.
Patterns are case-insensitive where clinical text varies (ALL-CAPS nursing notes).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from meddata.filters.deid.spans import Span

_MONTH = (r"(?:jan(?:uary|\.)?|feb(?:ruary|\.)?|mar(?:ch|\.)?|apr(?:il|\.)?|may|june?|july?|aug(?:ust|\.)?"
          r"|sep(?:t(?:ember)?)?\.?|oct(?:ober|\.)?|nov(?:ember|\.)?|dec(?:ember|\.)?)")
_DAY = r"(?:[12][0-9]|3[01]|0?[1-9])(?:st|nd|rd|th)?"
_YEAR = r"(?:(?:19|20|21)\d\d|'\d\d|\u2019\d\d)"
_WEEKDAY = (r"(?:mon(?:day)?|tue(?:s(?:day)?)?|wed(?:nesday)?|thu(?:r(?:s(?:day)?)?)?|fri(?:day)?"
            r"|sat(?:urday)?|sun(?:day)?)")
_HOLIDAY = (r"(?:christmas(?:\s+(?:eve|day))?|thanksgiving|easter|halloween|new\s+year'?s(?:\s+(?:eve|day))?"
            r"|memorial\s+day|labor\s+day|independence\s+day|fourth\s+of\s+july|4th\s+of\s+july"
            r"|valentine'?s\s+day|mother'?s\s+day|father'?s\s+day|veterans\s+day|columbus\s+day|yom\s+kippur"
            r"|rosh\s+hashanah|hanukkah|passover|ramadan|diwali|super\s+bowl\s+sunday)")

_NUMERIC_BRANCHES = r"""
    (?P<iso>\b(?:19|20|21)\d\d[-/.](?:0?[1-9]|1[0-2])[-/.](?:0?[1-9]|[12]\d|3[01])(?:T[\d:.]+(?:Z|[+-]\d\d:?\d\d)?)?\b)
  | (?P<num3>(?<![\d/.])(?:0?[1-9]|1[0-2]|[12]\d|3[01])(?P<sep>[-/.])(?:0?[1-9]|1[0-2]|[12]\d|3[01])(?P=sep)(?:\d{4}|\d{2})(?![\d/]))
  | (?P<num2>(?<![\d/.-])(?<!\d:)(?:0?[1-9]|1[0-2])[/-](?:0?[1-9]|[12]\d|3[01])(?![\d/]|\.\d|-\d))
  | (?P<monyr>(?<![\d/])(?:0?[1-9]|1[0-2])/(?:19|20)\d\d(?!\d))
  | (?P<monyy>(?<![\d/.:-])(?:0?[1-9]|1[0-2])/(?:[4-9]\d)(?![\d/%]|\.\d))
  | (?P<dmy>\b""" + _DAY + r"""(?:\s+of)?[\s\-/.]*""" + _MONTH + r"""\b(?:[\s\-/.,]*""" + _YEAR + r""")?\b)
  | (?P<shortyr>(?<![\d'\u2019])['\u2019]\d\d\b(?!['\u2019"]))
  | (?P<year>(?<![\d$.,#/:-])(?:19[0-9]\d|20\d\d|21\d\d)(?![\d%]|\.\d|,\d|\s*(?:mg|mcg|g|kg|ml|mL|cc|units?|u|iu|IU|cal|kcal|calories|cells|copies|x|/|-\d|m|cm|mm|ft|feet|steps|meters|miles|patients|cases|lb|lbs|ng|pg)\b))
"""
_WORD_BRANCHES = r"""
    (?P<mdy>""" + _MONTH + r"""\b(?:[\s\-/.]*""" + _DAY + r"""\b)?(?:,?[\s\-/]*(?:of\s+)?""" + _YEAR + r""")?\b)
  | (?P<wday>""" + _WEEKDAY + r"""s?\b)
  | (?P<holiday>""" + _HOLIDAY + r"""\b)
  | (?P<season>(?:spring|summer|fall|autumn|winter)\s+(?:of\s+)?""" + _YEAR + r"""\b)
  | (?P<ordinal>(?:on\s+the|the)\s+(?P<ord>(?:[12][0-9]|3[01]|0?[1-9])(?:st|nd|rd|th))(?=\s*(?:[.,;)]|$|\s+(?:of|at|in|and|or|when|she|he)\b)))
"""
# Numbers are scanned with one regex; word-led dates are tried only where a word starts
# with a month, weekday, holiday or season prefix (scanning a long word alternation at every
# position costs more than the rest of detection).
DATE_NUMERIC = re.compile(r"(?=[\d'\u2019])(?:" + _NUMERIC_BRANCHES + ")", re.I | re.X)
DATE_WORD = re.compile(_WORD_BRANCHES, re.I | re.X)
_WORD_START = re.compile(r"\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec|mon|tue|wed|thu|fri|sat|sun|chr|tha|"
                         r"eas|hal|new|mem|lab|ind|fou|4th|val|mot|fat|vet|col|yom|ros|han|pas|ram|diw|sup|spr|sum|"
                         r"fal|aut|win|the(?=\s+\d)|on(?=\s+the\s+\d))", re.I)
DATE = re.compile(_NUMERIC_BRANCHES + "|" + _WORD_BRANCHES, re.I | re.X)  # the whole family, for reference

# Context that turns ``5/5`` or ``2/6`` into a score, not a date.
def _ending_with(alternation: str) -> re.Pattern[str]:
    """Context that ends with one of these words (then at most three non-word characters)."""
    return re.compile(r"(?<![a-z])(?:" + alternation + r")\W{0,3}$", re.I)


_NOT_DATE_BEFORE = _ending_with(
    r"strength|motor|power|reflex(?:es)?|dtrs?|grade|murmur|pain|scale|score|bp|blood pressure|vision|acuity|"
    r"ratio|rated|level|gcs|apgars?|g\d*p\d*|x|times|out of|sbp|dbp|tab|tabs|take|sig|pulses?|rom|sensation|"
    r"psv|ps|cpap|bipap|peep|simv|vent|c/o|d5|d5w|[\d.]+\s*(?:cm|mm)")
_NOT_DATE_AFTER = re.compile(
    r"^\s*(?:strength|murmur|pain|in strength|bilat|tab|tabs|tablets?|inch|inches|in\.|cm|mm|mile|blocks?|cups?|scale|"
    r"score|of\s+\d|pulses?|reflexes|mmhg|systolic|holosystolic|diastolic|hpf|lpf|cells|ratio|dilut|units?|"
    r"wks?|weeks?|days?|d\b|months?|mos?|hours?|hrs?|h\b|times|x\b|yrs?|years?|min|minutes|beats|drinks|packs?|"
    r"ppd|cigarettes|episodes|per\b|ns\b|nss\b|str\b|peep|/)", re.I)
# Ranges and fractions of nursing notes ("rr 12-18", "rales 1/3 up", "4-6p") are not dates.
_RANGE_BEFORE = _ending_with(
    r"rr|hr|cvp|pad|pas|pap|map|wedge|pcwp|temp|tmax|t|sats?|spo2|o2|peep|ps|fio2|rate|approx|about|around|x|q|"
    r"every|up|goal|of|peak|plat|plateau|tv|vt|rsbi|ci|co|svr|pvr|bs|fs|fsbs|glucose|hct|k|na|mg|ph|icp|cpp|pcw|noc|"
    r"stage|through|grade|uop|u/o|i/o")
_RANGE_AFTER = re.compile(
    r"^\s*(?:mg|mcg|ug|gtts?|g\b|l\b|s\b|liters?|lpm|assist|am\b|pm\b|a\b|p\b|%|cc|ml|hrs?\b|hours?|units?|u\b|mm|cm|"
    r"times|tabs?|beats|breaths|bpm|mmhg|l/|mg/|mcg/|liters?/|people|persons|staff|nurses)", re.I)
# After an uncued "1-2": a word that is no month, weekday or time cue means a count or range.
_COUNTED_AFTER = re.compile(
    r"\s+(?!(?:at|on|in|@|am|pm|hrs?|jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec|mon|tue|wed|thu|fri|sat|sun|"
    r"admission|admit|discharge|surgery|visit)\b)[A-Za-z]{2,}", re.I)
_VERB_AFTER = re.compile(r"\s+(?:be|have|not|need|require|also|go|want|benefit|take|try|get|do|help|cause|use|"
                         r"consider|return|call|come|improve|develop|resume|continue|see|stay|remain)\b", re.I)
_VENT_BEFORE = re.compile(r"\b(?:psv|cpap|bipap|peep|simv|imv|ps|vent(?:ilator)?|settings?|ac)\b[^\n]{0,12}$", re.I)
_DATE_CUE_BEFORE = _ending_with(
    r"on|since|from|until|till|dated?|dos|admitted|discharged|d/c'?d|seen|started|began|done|performed|surgery|"
    r"echo|cath|visit|appt|appointment|due|last|next")
_MONTHNAME_ALONE = re.compile(r"^(?:may|mar|march|jan|feb|apr|jun|jul|aug|sep|sept|oct|nov|dec|june|july)$", re.I)
_MONTH_CONTEXT = re.compile(r"(?:\b(?:in|on|since|until|till|of|by|early|late|mid|during|through|last|next|"
                            r"this|from|before|after|between|to|and)[\s-]*)$", re.I)


def _date_ok(m: re.Match, text: str) -> bool:
    kind = m.lastgroup
    s = m.group()
    before = text[max(0, m.start() - 25):m.start()]
    after = text[m.end():m.end() + 20]
    if kind in ("num2", "num3", "monyy"):
        if _NOT_DATE_BEFORE.search(before) or _NOT_DATE_AFTER.match(after):
            return False
        if kind != "num3" and re.match(r"^\s*(?:\+|/|x\b|[-]\s*\d)", after) or after.startswith("%"):
            return False
        if _VENT_BEFORE.search(before):
            return False  # "PSV 10/5", "CPAP .5% 5/8", "change to 5/5": ventilator settings
        if kind == "monyy":
            return not _RANGE_BEFORE.search(before)  # "BP 80/40" is caught above; "PEEP 5/50" here
        if kind == "num2":
            a, b = (int(x) for x in re.split(r"[/-]", s))
            cued = _MONTH_CONTEXT.search(before) or _DATE_CUE_BEFORE.search(before)
            if "/" in s and a < b <= 4 and not cued:
                return False  # "rales 1/3 up", "1/2 NS": fractions
            if "-" in s and (_RANGE_AFTER.match(after) or not cued and _RANGE_BEFORE.search(before)):
                return False  # "rr 12-18", "x 3-4", "1-2 assist", "4-6p": ranges
            if "-" in s and not cued and _COUNTED_AFTER.match(after):
                return False  # "1-2 loose stools", "3-4 TIMES", "12-15 range": a count, not a date
        return True
    if kind == "mdy":
        words = re.split(r"[\s\-/.,]+", s.strip())
        month = words[0].rstrip(".")
        if len(words) == 1 or (len(words) == 2 and not words[1]):
            # A month name on its own: only with a date-ish preposition before it, and never
            # "May"/"March" used as a verb at the start of a sentence.
            if _MONTHNAME_ALONE.match(month) and not _MONTH_CONTEXT.search(before):
                return False
            if s[0].islower() and not s.islower():
                return False
            if month.lower() in ("may", "march") and s[0].islower() and not _MONTH_CONTEXT.search(before):
                return False
            if month.lower() in ("may", "march") and _VERB_AFTER.match(after):
                return False  # "AND MAY BE UP", "may need", "will march"
        return True
    if kind == "wday":
        w = s.lower()
        if w in ("sats", "suns", "mons"):
            return False
        if len(w) <= 4 and w not in ("tues", "thur", "thurs"):
            # "Sat" (saturation), "Sun", "Wed", "Mon" alone need "on", or a date right after.
            return bool(re.search(r"\bon\s*$", before, re.I) or re.match(r"^[\s,.]*\d{1,2}/\d", after)) \
                and s[0].isupper()
        return True
    if kind == "year":
        if re.match(r"^\s*(?:-\s*\d{3,4}\b|hrs?\b|hours\b|h\b)", after, re.I):
            return False  # "1900-0700", "at 1930 hrs": clock times
        if re.search(r"(?:\b(?:at|around|approx(?:imately|\.)?|until|till)|@|\d[/-]\d{1,2}|-)\s*$", before, re.I):
            return False
        if s.isdigit() and 2100 <= int(s) <= 2359 and int(s[2:]) < 60:
            return False  # "arrived 2130", "2230 meds given": a 24-hour clock time, not a year
        return not re.search(r"(?:#|no\.?|number|mrn|id|code|room|rm|bed|ext\.?|x)\s*$", before, re.I)
    return True


def _date_matches(text: str) -> Iterator[re.Match]:
    yield from DATE_NUMERIC.finditer(text)
    pos = 0
    for w in _WORD_START.finditer(text):
        if w.start() < pos:
            continue
        m = DATE_WORD.match(text, w.start())
        if m:
            pos = m.end()
            yield m


# Spelled-out dates, as dictated: "July thirty first O eight", "March third, two thousand nine".
_UNITS_WORD = r"(?:one|two|three|four|five|six|seven|eight|nine)"
_ORD_WORD = r"(?:first|second|third|fourth|fifth|sixth|seventh|eighth|ninth)"
_SPELLED_DAY = (r"(?:(?:twenty|thirty)[\s-]+(?:" + _ORD_WORD + "|" + _UNITS_WORD + r")|" + _ORD_WORD
                + r"|tenth|eleventh|twelfth|(?:thir|four|fif|six|seven|eigh|nine)teenth|twentieth|thirtieth|"
                + r"ten|eleven|twelve|(?:thir|four|fif|six|seven|eigh|nine)teen|twenty|thirty|" + _UNITS_WORD + ")")
_SPELLED_YEAR = (r"(?:(?:o|oh|zero)[\s-]+" + _UNITS_WORD + r"|two\s+thousand(?:\s+(?:and\s+)?\w+)?|"
                 r"nineteen[\s-]+(?:(?:twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety)(?:[\s-]+" + _UNITS_WORD
                 + r")?|ten|eleven|twelve|(?:thir|four|fif|six|seven|eigh|nine)teen|(?:o|oh)[\s-]+" + _UNITS_WORD + "))")
SPELLED_DATE = re.compile(
    r"\b(?:january|february|march|april|may|june|july|august|september|october|november|december)[\s,]+(?:the\s+)?"
    + _SPELLED_DAY + r"\b(?:,?\s+(?:of\s+)?" + _SPELLED_YEAR + r"\b)?", re.I)
# Two-digit years after an event in a history list: "PMH MI 92, CABG", "CVA 74'", "CHOLECYSTECTOMY 77'".
_EVENT = (r"mi|ami|nstemi|stemi|cva|tia|cabg|ptca|pci|stent|avr|mvr|chf|dvt|pe|ca|cancer|stroke|surgery|sx|"
          r"appy|chole|turp|tah|tkr|thr|orif|dx|dx'd|diagnosed|[a-z]*(?:ectomy|otomy|ostomy|plasty|scopy)")
TWO_DIGIT_YEAR = re.compile(
    r"\b(?:" + _EVENT + r")\s+(?:x\s?\d\s+)?(?:in\s+)?(?P<y>['\u2019]?(?:[3-9]\d|0\d)['\u2019]?)(?=\s*(?:[,;)]|\.(?!\d)|$|\s+(?:and|&|w/|with|s/p|x\d)\b))",
    re.I | re.M)

# A spelled-out year after "born in", "in", "since": "born in nineteen oh two", "since two thousand six".
_SPELLED_YEAR_CUED = re.compile(
    r"\b(?:born\s+in|in|since|until|year)\s+(?P<y>nineteen[\s-]+(?:(?:twenty|thirty|forty|fifty|sixty|seventy|"
    r"eighty|ninety)(?:[\s-]+" + _UNITS_WORD + r")?|ten|eleven|twelve|(?:thir|four|fif|six|seven|eigh|nine)teen|"
    r"(?:o|oh|hundred)[\s-]+" + _UNITS_WORD + r")|two\s+thousand(?:\s+(?:and\s+)?(?:" + _UNITS_WORD
    + r"|ten|eleven|twelve|(?:thir|four|fif|six|seven|eigh|nine)teen|twenty(?:[\s-]+" + _UNITS_WORD + r")?))?)\b", re.I)


def find_dates(text: str) -> Iterator[Span]:
    for m in _date_matches(text):
        if _date_ok(m, text):
            if m.lastgroup == "ordinal":
                yield Span(m.start("ord"), m.end("ord"), "DATE")
            else:
                yield Span(m.start(), m.end(), "DATE")
    for m in SPELLED_DATE.finditer(text):
        yield Span(m.start(), m.end(), "DATE")
    for m in TWO_DIGIT_YEAR.finditer(text):
        yield Span(m.start("y"), m.end("y"), "DATE")
    for m in _SPELLED_YEAR_CUED.finditer(text):
        yield Span(m.start("y"), m.end("y"), "DATE")


_NUMWORD = (r"(?:(?:twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|one\s+hundred(?:\s+and)?)"
            r"(?:[\s-]+(?:one|two|three|four|five|six|seven|eight|nine))?|one|two|three|four|five|six|seven|"
            r"eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen|"
            r"one\s+hundred(?:\s+and)?(?:\s+\w+)?)")
AGE = re.compile(
    r"""
    (?P<a>\b(?P<n1>\d{1,3}|""" + _NUMWORD + r""")(?:\s*|-)(?:y/?o\b|y\.o\.?|yrs?\b\.?|years?\b|yr\.?\b|-?year)(?:[\s-]*old)?)
  | (?P<b>\b(?:age[ds]?|aged|age:)\s*:?\s*(?P<n2>\d{1,3})\b(?!\s*(?:mg|%|days|weeks|months|mo|wk)))
  | (?P<c>\b(?P<n3>\d{2,3})\s?(?:yo|y/o)?\s?(?:m|f|male|female|man|woman|wm|wf|bm|bf|hm|hf)\b(?=[\s,.;]))
  | (?P<d>\b(?:in\s+(?:his|her|their)\s+)(?P<n4>(?:early|mid|late)[\s-]+)?(?P<n5>\d0'?s|nineties|hundreds)\b)
  | (?P<e>\b(?P<n6>nonagenarian|centenarian|supercentenarian)\b)
  | (?P<h>\b(?:be|turn|turns|turned|turning|is|was|aged)\s+(?P<n9>(?:ninety|one\s+hundred)(?:[\s-]+(?:and\s+)?(?:one|two|three|four|five|six|seven|eight|nine))?)\b(?!\s+(?:percent|%|mg|minutes|min|seconds|days|pounds|lbs)))
  | (?P<g>\b(?:he|she|patient|pt|mother|father|mom|dad|wife|husband|sister|brother|son|daughter|grandmother|
        grandfather|grandma|grandpa)\s+(?:is|was|turned|turns|is\s+now|now)\s+(?P<n8>\d{1,3})\b
        (?!\s*(?:mg|%|kg|lbs?|cm|mm|days?|weeks?|months?|hours?|minutes?|am|pm|/|\.\d|percent)))
  | (?P<f>\b(?:died|passed\s+away|alive|deceased|diagnosed|dx(?:'d)?|expired|death)\b[^.\n\d]{0,30}?\b(?:at|age)\s+(?:age\s+)?(?P<n7>\d{1,3})\b(?!\s*(?:mg|%|am|pm|hours|hrs|:)|:\d))
    """,
    re.I | re.X,
)
# Spelled-out ages are rare: the (slow) number-word regex runs only when a number word stands
# before "years"/"yrs"/"y/o" (found by scanning for the short literal, then looking back).
_YEARS_WORD = re.compile(r"(?:years?|yrs?|y/o)\b", re.I)
_NUMBER_WORD_BEFORE = re.compile(
    r"(?:ty|teen|hundred|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve)[\s-]+$", re.I)


def _spelled_age(text: str) -> bool:
    return any(_NUMBER_WORD_BEFORE.search(text, max(0, m.start() - 20), m.start())
               for m in _YEARS_WORD.finditer(text))


_AGE_LEADS = (r"age|in\s|non|cen|sup|he|she|pat|pt|mot|fat|mom|dad|wif|hus|sis|bro|son|dau|gra|die|pas|ali"
              r"|dec|dia|dx|exp|dea|be|tur|is|was")
AGE_DIGITS = re.compile(r"(?=[\dA-Za-z])(?=\d|\b(?:" + _AGE_LEADS + "))(?:" + AGE.pattern.replace("|" + _NUMWORD, "", 1) + ")", re.I | re.X)
assert _NUMWORD not in AGE_DIGITS.pattern
_WORDNUM = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen".split())}
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80,
         "ninety": 90}


def age_value(token: str) -> int | None:
    """The number an age token names (``92``, ``ninety-two``, ``90s``); None if unknown."""
    t = token.lower().strip()
    digits = re.match(r"\d+", t)
    if digits:
        return int(digits.group())
    if t.startswith("one hundred") or t in ("hundreds", "centenarian", "supercentenarian"):
        return 100
    if t in ("nineties", "nonagenarian"):
        return 90
    parts = re.split(r"[\s-]+", t)
    total = 0
    for p in parts:
        total += _TENS.get(p, 0) + _WORDNUM.get(p, 0)
    return total or None


def find_ages(text: str, min_age: int = 0) -> Iterator[Span]:
    for m in (AGE if _spelled_age(text) else AGE_DIGITS).finditer(text):
        for g in ("n1", "n2", "n3", "n5", "n6", "n7", "n8", "n9"):
            if m.group(g):
                value = age_value(m.group(g))
                if value is None or value > 125:
                    break
                if g == "n3" and (value < 10 or text[m.start() - 1:m.start()] in "-/."):
                    break
                if value >= min_age:
                    start = m.start("n4") if g == "n5" and m.group("n4") else m.start(g)
                    yield Span(start, m.end(g), "AGE")
                break


PHONE = re.compile(
    r"""(?=[\d(+]|(?i:ext|pag|pg|bee|bpr|fax|tel|pho|ph|cel|mob|cal|x|des|wor|hom|con))(?:
    (?P<nanp>(?<![\w/.-])(?:\+?1[\s.-]?)?(?:\(\d{3}\)\s*|\d{3}[\s.-]|\d{3}/(?=\d{3}/\d{4})|\d{3}(?=\d{7}(?!\d)))
        \d{3}(?:[\s.-]?|(?<=\d{3}/\d{3})/)\d{4}(?![\d-]|\.\d)
        (?:\s*(?:x|ext\.?|extension|\#)\s*\d{1,6}\b)?)
  | (?P<intl>(?<![\w])\+\d{1,3}(?:[\s.-]?\(?\d{1,4}\)?){2,5}(?!\d))
  | (?P<eu>(?<![\w.:/-])0\d{2,3}[\s]\d{2,4}(?:[\s]\d{2,4}){1,3}(?![\w.]))
  | (?P<labelled>(?:\b(?:tel|phone|ph|cell|mobile|mob|fax|desk|work|home|contact)(?:\s+(?:number|no\.?|\#))?[ \t]*:[\s]*)
        (?P<labnum>\(?\d[\d().-]*(?:[ ][\d().-]+){1,3}\d?)(?![\w.]|\.\d))
  | (?P<ext>(?:\b(?:ext\.?|extension|pager|pgr|pg|beeper|bpr|fax|tel|phone|ph|cell|mobile|call|page|x)[\s:#.]*)
        (?P<extnum>\d[\d-]{3,9}\d?)\b(?!\.\d|%|\s*(?:mg|ml|cm|mm|kg|units?|%)))
  | (?P<local>(?<![\w/.-])\d{3}-\d{4}(?![\d-])))
    """,
    re.I | re.X,
)


_LOCAL_NOT_PHONE_BEFORE = re.compile(r"(?:from|between|range[sd]?|of|to|x|about|approx\.?|~|[\d./-])\s*$")
_LOCAL_NOT_PHONE_AFTER = re.compile(
    r"(?:[a-z%/]|-\d|\s*(?:%|/|(?:mg|mcg|ml|cc|units?|u|g|kg|l|mmhg|cells|copies|times|hours|hrs|days)\b))", re.I)


def find_phones(text: str) -> Iterator[Span]:
    for m in PHONE.finditer(text):
        if m.lastgroup == "labelled":
            # "Phone:\n467 3395", "Mobile: 432 03 163": spaced groups after a phone label
            if sum(c.isdigit() for c in m.group("labnum")) >= 7:
                yield Span(m.start("labnum"), m.end("labnum"), "PHONE")
            continue
        if m.lastgroup == "ext" or m.group("extnum"):
            # "x4321", "pager 12345": the number alone; "x" must touch the digits.
            lead = m.group()[: m.start("extnum") - m.start()]
            if lead.strip().lower() == "x" and (lead != lead.strip() or m.start() > 0 and text[m.start() - 1].isalnum()):
                continue
            yield Span(m.start("extnum"), m.end("extnum"), "PHONE")
        elif m.lastgroup == "intl" and sum(c.isdigit() for c in m.group()) < 8:
            continue
        elif m.lastgroup == "local":
            # 555-1234 is a phone; 120-1234 inside a lab range is not; require a phone-ish cue
            # or a line of its own.
            before = text[max(0, m.start() - 30):m.start()].lower()
            cued = re.search(r"(?:phone|tel|call|cell|fax|pager|page|#|contact|number|ph|reach|home|work|:)\W*$", before)
            # uncued: an exchange (2-9xx) that is not a range or a quantity ("140-1500 cc")
            if not cued and (m.group()[0] in "01" or _LOCAL_NOT_PHONE_BEFORE.search(before)
                             or _LOCAL_NOT_PHONE_AFTER.match(text, m.end())):
                continue
            yield Span(m.start(), m.end(), "PHONE")
        else:
            yield Span(m.start(), m.end(), "PHONE")


EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
URL = re.compile(
    r"\b(?:https?://|ftp://|www\.)[^\s<>\"')\]]+[^\s<>\"')\].,;:]"
    r"|\b(?:[a-z0-9-]+\.)+(?:com|org|net|edu|gov|mil|info|biz|io|us|uk|ca|de|fr|co|health|me)\b(?:/[^\s<>\"')]*)?",
    re.I,
)
_URL_HINT = re.compile(r"://|www\.|\.(?:com|org|net|edu|gov|mil|info|biz|io|us|uk|ca|de|fr|co|health|me)\b", re.I)
IPV4 = re.compile(r"(?=\d)(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?![\d.]|\.\d)")
IPV6 = re.compile(r"(?<![\w:])(?:[0-9a-f]{1,4}:){2,7}(?::|[0-9a-f]{1,4})(?![\w:])", re.I)
SSN = re.compile(
    r"(?=[\d\s:#.i])(?:(?<![\d-])(?!000|666|9\d\d-00)\d{3}-\d{2}-\d{4}(?![\d-])"
    r"|(?<=ssn)[\s:#.]*(?:[\dx*]{3}[- ]?[\dx*]{2}[- ]?\d{4}|\d{9})\b"
    r"|(?<=social security number)[\s:#.is]*\d{3}[- ]?\d{2}[- ]?\d{4}\b)",
    re.I,
)

# Labelled identifiers: the label decides the type, the value must hold a digit.
_ID_LABELS = {
    "MRN": r"mrn|emr|ehr|mr\s*#|mr\s+no\.?|med(?:ical)?\s+rec(?:ord)?s?(?:\s+(?:number|no\.?|#))?|record\s+(?:number|no\.?|#)"
           r"|unit\s+(?:number|no\.?)|hospital\s+(?:number|no\.?)|chart\s+(?:number|no\.?|#)|patient\s+id|pt\s+id"
           r"|hn|hospital\s+id|case\s+(?:number|no\.?|#)",
    "ID": r"acct|account(?:\s+(?:number|no\.?|#))?|member\s*(?:id|number|no\.?|#)?|policy(?:\s+(?:number|no\.?|#))?"
          r"|group(?:\s+(?:number|no\.?|#))|subscriber(?:\s+id)?|insurance(?:\s+(?:id|number|no\.?|#))?|medicaid(?:\s+id)?"
          r"|medicare(?:\s+id)?|health\s*plan(?:\s+(?:id|number|no\.?|#))?|beneficiary(?:\s+(?:id|number|no\.?|#))?"
          r"|hicn|mbi|plan\s+id|claim(?:\s+(?:number|no\.?|#))?|licen[cs]e(?:\s+(?:number|no\.?|#))?|lic\.?(?:\s*#)?"
          r"|dea(?:\s+(?:number|no\.?|#))?|npi|certificate(?:\s+(?:number|no\.?|#))?|cert\.?(?:\s*#)?"
          r"|serial(?:\s+(?:number|no\.?|#))?|s/n|sn|device\s+(?:id|number|no\.?|#)|udi|lot(?:\s+(?:number|no\.?|#))?"
          r"|model\s+(?:number|no\.?|#)|plate(?:\s+(?:number|no\.?|#))?|license\s+plate|tag\s+(?:number|#)|vin"
          r"|vehicle\s+(?:id|identification\s+number)|passport(?:\s+(?:number|no\.?|#))?|driver'?s\s+licen[cs]e"
          r"|dl|badge(?:\s+(?:number|#))?|employee\s+(?:id|number|#)|accession(?:\s+(?:number|no\.?|#))?"
          r"|specimen\s+(?:id|number|no\.?|#)|order\s+(?:number|no\.?|#)|encounter\s+(?:id|number|#)|visit\s+(?:id|number|#)"
          r"|csn|fin|har|ref(?:erence)?\s*(?:number|no\.?|#)|confirmation\s+(?:number|#)|ticket\s+(?:number|#)"
          r"|id(?:\s+(?:number|no\.?|#))?|identifier|no\.|number",
}
def keyword_leads(alternation: str) -> str:
    """A lookahead body matching the first two literal characters of each top-level branch,
    so a long keyword alternation fails fast at the many positions where no keyword starts."""
    branches, depth, cur = [], 0, ""
    for ch in alternation:
        if ch == "(" and not cur.endswith("\\"):
            depth += 1
        elif ch == ")" and not cur.endswith("\\"):
            depth -= 1
        if ch == "|" and depth == 0:
            branches.append(cur)
            cur = ""
        else:
            cur += ch
    branches.append(cur)
    leads = set()
    for b in branches:
        lit = re.match(r"[a-z/']{1,2}", b)
        if lit is None:
            raise ValueError(f"branch {b!r} does not start with a literal")
        leads.add(re.escape(lit.group()))
    return "|".join(sorted(leads, key=len, reverse=True))


LABELLED_ID = re.compile(
    r"(?=[A-Za-z])\b(?=" + keyword_leads(_ID_LABELS["MRN"] + "|" + _ID_LABELS["ID"]) + r")(?:(?P<MRN>" + _ID_LABELS["MRN"] + r")|(?P<ID>" + _ID_LABELS["ID"] + r"))"
    r"(?:\s*(?:is|was|:|#|=|-|no\.?)\s*)*\s*(?P<value>[A-Z0-9#][A-Z0-9\-/.#]*\d[A-Z0-9\-/]*)(?<![.-])",
    re.I,
)
# Unlabelled: "#12345678", long digit runs, letter-prefixed ids like "P12345678" or "CSH-123456",
# vehicle identification numbers, dashed serials.
BARE_ID = re.compile(
    r"(?=[\w#])(?:(?P<uuid>\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b)"
    r"|(?P<hash>(?<![\w#])#\s?\d{4,}\b)"
    r"|(?P<vin>\b[A-HJ-NPR-Z0-9]{17}\b)"
    r"|(?P<iban>\b[A-Z]{2}\d{2}[A-Z0-9]{11,30}\b)"
    r"|(?P<alnum>\b(?=[A-Z0-9-]*\d{4})(?=[A-Z0-9-]*[A-Z])[A-Z]{1,4}-?\d{4,}(?:-[A-Z0-9]+)*\b)"
    r"|(?P<dashed>(?<![\w.-])\d{2,6}(?:-\d{2,8}){2,4}(?![\w.-]))"
    r"|(?P<long>(?<![\w.,/:-])\d{7,}(?![\w,]|\.\d|/\d)))",
)
BIOMETRIC = re.compile(
    r"\b(?:finger\s*prints?|thumb\s*prints?|voice\s*prints?|retina(?:l)?\s+scans?|iris\s+scans?|palm\s*prints?"
    r"|full[-\s]face\s+(?:photo(?:graph)?s?|images?)|facial\s+photo(?:graph)?s?|photo(?:graph)?s?\s+of\s+(?:the\s+)?"
    r"(?:patient'?s?\s+)?face|dna\s+profile|biometric\s+\w+)\b",
    re.I,
)


def _simple(regex: re.Pattern, type_: str) -> Callable[[str], Iterator[Span]]:
    def find(text: str) -> Iterator[Span]:
        for m in regex.finditer(text):
            yield Span(m.start(), m.end(), type_)
    return find


def find_ids(text: str) -> Iterator[Span]:
    for m in LABELLED_ID.finditer(text):
        label = m.group("MRN") or m.group("ID")
        value = m.group("value")
        if label.lower() in ("no.", "number", "id", "dl", "sn", "fin", "har") and sum(c.isdigit() for c in value) < 4:
            continue
        if re.fullmatch(r"\d{1,2}[/.]\d{1,2}(?:[/.]\d{2,4})?", value):
            continue  # a date after "visit" or "order"
        yield Span(m.start("value"), m.end("value"), "MRN" if m.group("MRN") else "ID")
    for m in BARE_ID.finditer(text):
        kind = m.lastgroup
        value = m.group()
        if kind == "vin" and not (any(c.isdigit() for c in value) and any(c.isalpha() for c in value)):
            continue
        if kind == "dashed" and text[m.end():m.end() + 1] == "%":
            continue  # "rate 10-600-50%": ventilator settings
        yield Span(m.start(), m.end(), "MRN" if kind == "hash" else "ID")


def find_ssn(text: str) -> Iterator[Span]:
    for m in SSN.finditer(text):
        s, e = m.start(), m.end()
        while s < e and not text[s].isalnum():
            s += 1
        yield Span(s, e, "SSN")


_IPV6_HINT = re.compile(r"[0-9a-f]{1,4}:[0-9a-f]{0,4}:", re.I)


def find_ips(text: str) -> Iterator[Span]:
    for m in IPV4.finditer(text):
        yield Span(m.start(), m.end(), "IP")
    if not _IPV6_HINT.search(text):
        return
    for m in IPV6.finditer(text):
        if m.group().count(":") >= 3:
            yield Span(m.start(), m.end(), "IP")


def find_urls(text: str) -> Iterator[Span]:
    if not _URL_HINT.search(text):
        return
    for m in URL.finditer(text):
        before = text[max(0, m.start() - 1):m.start()]
        if before == "@":
            continue
        yield Span(m.start(), m.end(), "URL")


def find_emails(text: str) -> Iterator[Span]:
    if "@" in text:
        for m in EMAIL.finditer(text):
            yield Span(m.start(), m.end(), "EMAIL")
find_biometric = _simple(BIOMETRIC, "BIOMETRIC")

#: Every structured-identifier family except ages (ages take a threshold).
# US military postal addresses: "PSC 2721, Box 8637, APO AA 06259", "USNS Ship\nFPO AP 12345"
_MILITARY_ADDRESS = re.compile(
    r"(?:\b(?:PSC|CMR|Unit)\s+\d{3,5},?\s+Box\s+\d{1,5},?\s*|\b(?:USNS|USS|USCGC)\s+[A-Z][A-Za-z]+,?\s*)?"
    r"\b[ADF]PO\s+A[AEP],?\s+\d{5}\b")
find_military_addresses = _simple(_MILITARY_ADDRESS, "LOCATION")
# Ten-digit phone numbers with one separator missing: "(240444-1243)", "410-5551243".
_RUN_TOGETHER_PHONE = re.compile(r"(?<![\w/.-])(?:\d{6}[-.]\d{4}|\d{3}[-.]\d{7})(?![\w-]|\.\d)")
find_run_together_phones = _simple(_RUN_TOGETHER_PHONE, "PHONE")

FAMILIES: tuple[Callable[[str], Iterator[Span]], ...] = (
    find_emails, find_urls, find_ips, find_ssn, find_phones, find_ids, find_dates, find_biometric,
    find_military_addresses, find_run_together_phones,
)
