"""Person names: cue words, titles, credentials and name dictionaries.

Evidence, strongest first:

1. a cue right before the words (``Dr.``, ``Mrs.``, ``wife``, ``seen by``, ``Pt. name:``,
   ``dictated by``) or a credential right after (``J. Smith, MD``);
2. the words are in the name dictionaries and are not everyday or clinical words
   (``Jones``; not ``Brown`` or ``Foley``);
3. in mixed-case text, capitalisation mid-sentence plus a dictionary hit or a neighbouring
   initial (``Grace Brown``, ``J. Brown``).

ALL-CAPS and lower-case lines have no capitalisation evidence, so there only cues and
unambiguous dictionary words count. Medical eponyms (``Parkinson's disease``, ``Foley
catheter``, ``Kelly clamp``) are not names unless a cue says so.
"""

from __future__ import annotations

import bisect
import re

from meddata.filters.deid.dictionaries import MONTHS, STOPWORDS, WEEKDAYS, Lexicon
from meddata.filters.deid.patterns import keyword_leads
from meddata.filters.deid.spans import Span
from meddata.filters.deid.tokens import Token

TITLES = frozenset("dr doctor drs mr mrs ms miss mx mister prof professor sr sister rev reverend fr father".split())
RELATIONS = frozenset("""
wife husband spouse partner daughter son mother father mom mum dad sister brother aunt uncle niece nephew cousin
grandson granddaughter grandmother grandfather grandma grandpa granny friend neighbor neighbour fiance fiancee
boyfriend girlfriend caregiver caretaker guardian hcp proxy poa roommate stepson stepdaughter stepmother stepfather
sibling daughters sons children child kids kid sis bro wife's husband's niece's companion friends
""".split())
# Phrases after which a name follows: verbs, prepositions of care, labels.
_CUE_PHRASES = """
seen by|seen with|evaluated by|examined by|discussed with|discussed w|d/w|dw|spoke with|spoke to|talked to|talked with
|called|paged|per|signed by|dictated by|transcribed by|reviewed by|referred by|referred from|consulted|covering for
|signed out to|accompanied by|visited by|followed by|care of|attended by|performed by|assisted by|notified|informed
|contacted|message to|message from|letter to|copy to|cc|c\\.c\\.|dear|thanks to|thank you|attending|attending physician
|attending surgeon|resident|intern|fellow|pcp|primary care|primary care physician|primary care provider|physician
|provider|surgeon|assistant|assistants|anesthesiologist|anesthesia|electronically signed by|signed|author|authored by
|rn|nurse|np|pa|emergency contact|contact|nok|next of kin|health care proxy|healthcare proxy|referring physician
|referring provider|referring|consultant|therapist|social worker|case manager|witness|interpreter|patient|pt
|patient name|pt name|name|named|by|with dr|cosigned by|co-signed by|entered by|ordered by|approved by|verified by
|reported to|reported by|results given to|results called to|read by|interpreted by|requested by|preceptor
|supervising physician|admitting physician|admitting|discharging physician|oncologist|cardiologist|neurologist
|surgeon is|pcp is|md|dictating|transcriptionist|scribe|chaplain|pastor|priest|rabbi|imam|mrs\\.? and mr\\.?
"""
_CUE_ALTERNATION = _CUE_PHRASES.replace("\n", "")
CUE = re.compile(r"(?=[A-Za-z])(?<![\w/])(?=" + keyword_leads(_CUE_ALTERNATION) + r")(?:" + _CUE_ALTERNATION + r")(?!\w)\s*[:\-=,]?\s*(?:is\s+|was\s+|named\s+)?(?=\S)",
                 re.I)
_LABEL_ONLY = frozenset("patient pt name by cc signed author contact physician provider resident fellow intern np pa rn "
                        "nurse assistant assistants anesthesia md referring named admitting per attending".split())
CREDENTIALS = frozenset("""
md m.d do d.o rn np pa pa-c cnm crna phd lpn rrt crt ccrn acnp rd cdn licsw msw lcsw pharmd rph dds dmd dpm od facp facc facs fnp anp apn
aprn mbbs mph bsn msn cns ccc-slp pt ot dpt otr mba ms ma facog faap fache frcs frcp cna emt lmft psyd lsw
""".split())
MEDICAL_FOLLOWERS = frozenset("""
disease diseases syndrome sign signs test tests maneuver manoeuvre reflex reflexes clamp clamps retractor retractors
forceps scissors catheter catheters drain drains tube tubes procedure operation repair fracture classification
criteria score scale position incision stitch suture sutures elevator needle blade stockings hose cyst palsy
phenomenon lesion lesions node nodes sarcoma lymphoma ulcer esophagus diverticulum triad law equation method
technique approach block type grade stage dressing dressings bag bags mask cannula pump pumps stain staining
solution tray table stand drape drapes hook hooks dilator dilators trocar scope lamp light bulb chair bed boot
collar brace splint cast gauze sponge sponges pad pads test's effect effusion murmur rub rate rhythm ratio
sheath wire wires filter valve shunt rod rods plate plates screw screws nail pin pins pouch ring coil stent
tear sponge punch curette rongeur knife elevator dissector suction tip probe spreader saw drill burr clip clips
""".split())
# Dictation initials, "JS/mb" (dictator/typist), alone on a line (optionally followed by a date):
# inside a sentence that shape is "CO/CI", "BUN/CR", "CP/pul".
_DICTATION_INITIALS = re.compile(
    r"(?:^|(?<=\s))(?!(?:II|III|IV|VI)/)([A-Z]{2,3})/(?!(?:II|III|IV|VI)\b)([a-z]{2,3}|[A-Z]{2,3})(?=\s|$)", re.M)
# One to three letters (dotted or not) ending the text after a sentence end, a line break, a
# dash or two spaces: the writer's initials.
_CLOSING_INITIALS = re.compile(r"(?:[.!?]\s+|\n[ \t]*|-+[ \t]*|[ \t]{2,})((?:[A-Za-z]\.){1,3}|[A-Za-z]{1,3})\s*\Z")
_ALONE_AFTER = re.compile(r"[ \t]*(?:$|[DT]:|\d{1,2}/\d{1,2}/\d{2,4})", re.M)
# Words that follow "dr"/"doctor" without being a surname ("dr aware", "Dr. on call", "doctor's office").
_NOT_AFTER_TITLE = frozenset("""
aware notified informed called paged here there team teams office offices visit visits note notes order orders
ordered rounds round said says states stated saw sees see seen came come comes will would wants want
recommends recommended recommendation recommendations appointment appt appts consult consulted following follow
followed covering coverage update updated updates made making knows told tells asked asks spoke speaks talked
discussed feels felt thinks thought plans plan changed increased decreased started stopped held gave given
into in at to on of for with by about re regarding concerned prescribed wrote written signed
""".split())
# Spoken fillers and greetings that open a turn in dialogues ("Patient: Yeah, ...", "Hm, okay").
INTERJECTIONS = frozenset("""
yeah yea yep yup nope nah um umm uh uhm hmm hm mm mhm ah aha oh ooh ok okay hi hello hey bye thanks well alright
i've i'm i'll i'd
""".split())
CONTRACTIONS = ("'t", "'ll", "'re", "'ve", "'d", "'m")  # "con't", "pt's", "doesn't": shorthand, not names
DRUG_ENDING = re.compile(r"(?:ol|ine|ide|cin|mycin|pril|sartan|statin|azole|vir|mab|nib|pam|lam|zide|done|cillin"
                          r"|cycline|floxacin|tidine|prazole|itis|osis|ectomy|otomy|ostomy|plasty|scopy|emia|pathy)$")
_VERBISH = frozenset("""
will would can could should may might must shall did does do has have had is was are were be been being not also
called calls visited visits visiting states stated said says reports reported aware updated present here there
at bedside in into with to and or who which that
""".split())
_ROLES_IN_PARENS = frozenset("resident intern attending fellow nurse physician surgeon pcp md np pa rn "
                              "cardiologist oncologist neurologist hospitalist therapist".split())
_ROLE_FOLLOWERS = frozenset("""
team teams service services surgeon surgeons surgery physician physicians doctors docs staff nurse nurses
nursing consult consults consultants clinic clinics dept department fellow fellows resident residents
attending attendings np pa rn md mds unit department's team's
""".split())
_NAME_DIGITS = re.compile(r"([A-Za-z]{3,})\d{2,4}")
_ROMAN = frozenset("ii iii iv vi vii viii ix xi xii".split())
_PARTICLES = frozenset("de del della der di da van von la le st st. bin ibn al el mac ben dos das du".split())


class NameFinder:
    """Finds person names in a token list. One instance per process; stateless per call."""

    def __init__(self, lex: Lexicon):
        self.lex = lex

    # -- token classes ------------------------------------------------------------------
    def strength(self, tok: Token) -> str:
        """strong | weak | initial | unknown | word for one word token."""
        if tok.text == "I" or tok.text == "A" and tok.initial_pos:
            return "word"
        if tok.text[-1].isdigit():
            # "Fred155 Koss676" (synthetic records number their names); "x2", "O2", "L5" are not names
            m = _NAME_DIGITS.fullmatch(tok.text)
            return "strong" if m and self.lex.is_name(m[1].lower()) and not self.lex.is_word(m[1].lower()) else "word"
        if tok.is_initial and tok.mode == "mixed":
            return "initial"
        w = tok.fold
        if w in INTERJECTIONS:
            return "word"
        if tok.mode == "mixed" and tok.text.isupper() and len(w) <= 4 and (
                w in self.lex.clinical or self.lex.is_common(w) or not self.lex.is_name(w)):
            return "word"  # "ED", "ICU", "ADA": abbreviations in a mixed line
        if not tok.is_word or w in STOPWORDS or w in MONTHS or w in WEEKDAYS or w in TITLES or w in _ROMAN:
            return "word"
        in_dict = self.lex.is_name(w)
        if in_dict and not self.lex.is_frequent_name(w) and w in self.lex.english:
            return "word"  # "Later", "Query": rare census surnames that are everyday words
        if in_dict:
            if (tok.mode != "mixed" or tok.text.isupper()) and w in self.lex.surname_words:
                return "weak"  # "CUSTARD TAKEN WELL": capitals say nothing here, and it is a word
            if len(w) < 3 and not (tok.mode == "mixed" and tok.text[0].isupper() and tok.text[1:].islower()):
                return "weak"
            if self.lex.is_common(w) or self.lex.is_medical_proper(w) or not self.lex.is_frequent_name(w) or (
                    w not in self.lex.first and self.lex.is_word(w)):
                return "weak"  # everyday, clinical, rare, or a surname that is also an inflected word ("SETTLES")
            if tok.mode == "mixed" and tok.text.isupper() and len(w) <= 4:
                return "weak"  # "ED", "ICU": abbreviations in a mixed line
            return "strong"
        if self.lex.is_word(w) or DRUG_ENDING.search(w) or w.endswith(CONTRACTIONS):
            return "word"  # "Droperidol", "Ceftazidime": drugs and procedures no list knows
        return "unknown"

    def _nameish(self, tok: Token, after_cue: bool) -> bool:
        """Could this token be part of a name here?"""
        if not tok.is_word:
            return False
        if tok.text[-1].isdigit():
            return self.strength(tok) == "strong"
        if tok.mode == "mixed":
            if not tok.text[0].isupper():
                return tok.fold in _PARTICLES and after_cue
            s = self.strength(tok)
            if s == "word":
                return after_cue and tok.fold not in STOPWORDS and tok.fold not in MONTHS and tok.fold not in TITLES \
                    and tok.fold not in INTERJECTIONS \
                    and tok.fold not in self.lex.clinical and not tok.fold.endswith(CONTRACTIONS)
            return True
        s = self.strength(tok)
        if after_cue:
            return s in ("strong", "weak", "initial", "unknown") or (
                len(tok.text) == 1 and tok.text.isalpha() and tok.fold not in STOPWORDS)
        return s == "strong"

    # -- main --------------------------------------------------------------------------
    def find(self, text: str, toks: list[Token]) -> list[Span]:
        spans = self._find(text, toks)
        # a word joined to another by an underscore is an identifier or a speaker role
        # ("Guest_family:", "patient_id"), not a person's name
        return [s for s in spans if text[s.end:s.end + 1] != "_" and text[s.start - 1:s.start] != "_"] \
            if "_" in text else spans

    def _find(self, text: str, toks: list[Token]) -> list[Span]:
        spans: list[Span] = []
        spans += self._after_cues(text, toks)
        spans += self._credentials(toks)
        spans += self._dictionary(toks)
        spans += self._last_first(text)
        spans += self._closing_initials(text)
        for m in _DICTATION_INITIALS.finditer(text):
            line_start = text.rfind("\n", 0, m.start()) + 1
            alone = not text[line_start:m.start()].strip() and _ALONE_AFTER.match(text, m.end())
            if not alone or m.group(2).isupper() and (
                    m.group(1).lower() in self.lex.clinical or m.group(2).lower() in self.lex.clinical):
                continue  # "CP/pul edema", "CO/CI 6.9": inside a sentence these are abbreviations
            spans.append(Span(m.start(1), m.end(1), "NAME", "rule"))
            spans.append(Span(m.start(2), m.end(2), "NAME", "rule"))
        return spans

    def _take_name(self, toks: list[Token], i: int, after_cue: bool, limit: int = 4) -> tuple[int, int] | None:
        """Longest run of name-ish tokens from ``i`` (with initials and their periods)."""
        j, last_word = i, None
        n = 0
        while j < len(toks) and n < limit:
            t = toks[j]
            if last_word is not None and (t.start - toks[j - 1].end > 1 or t.line_first):
                break
            if t.text == "." and last_word is not None and (toks[last_word].is_initial or (
                    toks[last_word].mode == "mixed" and len(toks[last_word].text) <= 2)):
                j += 1
                continue
            if t.text in ("-", "'", "\u2019") and last_word is not None and j + 1 < len(toks) and \
                    toks[j + 1].start == t.end and toks[j + 1].is_word:
                j += 1
                continue
            if t.text == "," and last_word is not None:
                break
            if not t.is_word or not self._nameish(t, after_cue or last_word is not None and n > 0 and after_cue):
                # a lone capital letter is an initial even in caps lines after a cue
                if after_cue and t.is_word and len(t.text) == 1 and t.text.isupper() and t.text not in "IA":
                    pass
                else:
                    break
            if t.mode != "mixed" and last_word is not None and not after_cue:
                break
            last_word = j
            n += 1
            j += 1
        if last_word is None:
            return None
        first = toks[i].fold
        if first in RELATIONS or first in TITLES or first.removesuffix("s") in CREDENTIALS:
            return None  # "visited by husband", "spoke with MDs"
        # trailing particles are not names
        while last_word >= i and toks[last_word].fold in _PARTICLES:
            last_word -= 1
        if last_word < i:
            return None
        return i, last_word

    def _after_cues(self, text: str, toks: list[Token]) -> list[Span]:
        starts = [t.start for t in toks]
        spans: list[Span] = []
        for m in CUE.finditer(text):
            cue = m.group().strip(" :-=,").lower()
            cue_word = re.sub(r"[\s,]+(?:is|was|named)$", "", cue)  # "name, is able": no label
            i = bisect.bisect_left(starts, m.end())
            if i >= len(toks):
                continue
            # a label like "Patient:" needs its colon (or start of line) to count
            if cue_word in _LABEL_ONLY and ":" not in m.group() and cue_word not in ("per", "by", "named"):
                continue
            if toks[i].mode == "mixed" and toks[i].text.islower() and not toks[i].line_first and \
                    self._bare_name_word(toks[i]) and (
                        cue_word not in _LABEL_ONLY or ":" in m.group() or cue_word in ("per", "by")):
                # "Spoke with margie", "Per kendra,": a lower-case word after a cue in a mixed-case
                # line is a name when a name list knows it and no word list does
                spans.append(Span(toks[i].start, toks[i].end, "NAME", "cue"))
                continue
            if cue_word in ("per", "by") and toks[i].mode == "mixed" and not toks[i].text[0].isupper():
                continue
            j = i
            if j < len(toks) and toks[j].fold in TITLES:
                j += 1
                if j < len(toks) and toks[j].text == ".":
                    j += 1
            if j >= len(toks):
                continue
            strict = cue_word in ("per", "by", "called", "notified", "informed", "contacted", "with dr", "dear",
                                  "thanks to", "thank you", "named", "consulted", "paged")
            got = self._take_name(toks, j, after_cue=True, limit=4)
            if got and strict and toks[j].mode == "mixed":
                # weak cues need a capitalized non-clinical word
                if not any(toks[k].text[0].isupper() and self.strength(toks[k]) != "word" for k in range(got[0], got[1] + 1)):
                    got = None
            if got and toks[j].mode == "mixed" and cue_word in _LABEL_ONLY and not any(
                    self.strength(toks[k]) != "word" for k in range(got[0], got[1] + 1)):
                got = None  # a speaker label in a transcript: "Patient: Yeah, it hurts", "Doctor: Well, ..."
            if got and (toks[j].mode != "mixed" or cue_word == "cc") and cue_word in _LABEL_ONLY | {"cc", "pcp"}:
                # a caseless label (or "CC:", often the chief complaint) needs a name-like value,
                # not "PT: AMBULATING" or "CC: FALL AT HOME"
                if not any(self.strength(toks[k]) in ("strong", "unknown") for k in range(got[0], got[1] + 1)):
                    got = None
            if got and strict and toks[j].mode != "mixed" and not any(
                    self.strength(toks[k]) == "strong" for k in range(got[0], got[1] + 1)):
                got = None  # "PER PROTOCAL", "name is called, able to": no capitals, no dictionary name
            if got and any(toks[k].fold in _ROLE_FOLLOWERS for k in range(got[1] + 1, min(got[1] + 3, len(toks)))
                           if toks[k].is_word):
                got = None  # "seen by tranplant team", "by Cardic Transplant surgeon": a service, not a person
            if got:
                a, b = got
                spans.append(Span(toks[a].start, toks[b].end, "NAME", "cue"))
        # titles and relations are handled token-wise (they need no colon)
        for i, t in enumerate(toks):
            w = t.fold
            if w in TITLES or w in RELATIONS:
                j = i + 1
                is_title = w in TITLES and w not in RELATIONS
                if is_title and j < len(toks) and toks[j].text in (":", "-", ","):
                    continue  # "MS: alert", "MS- sedated": a section label; "Doctor, I've been": addressed
                if w in ("sr", "fr") and not (t.mode == "mixed" and t.text[0].isupper() and j < len(toks)
                                              and toks[j].text == "."):
                    continue  # "hr 70 sr w/occ pvc", "20 fr foley": sinus rhythm, French gauge
                dotted = is_title and j < len(toks) and toks[j].text == "."
                if j < len(toks) and (toks[j].text in (",", ":", "-", "(") or dotted):
                    j += 1
                if is_title and t.mode == "mixed":
                    # A title abbreviation makes a lower-case word a surname ("Dr. griffin made aware",
                    # "dr green aware"); a lower-case title word before a lower-case word is a noun
                    # ("the doctor said").
                    nxt = toks[j] if j < len(toks) else None
                    lower_name = nxt is not None and nxt.text.islower() and \
                        self._plain_word_after_title(nxt, caseless=True)
                    if t.text[0].isupper():
                        if lower_name and w in ("dr", "mr", "mrs", "ms"):
                            spans.append(Span(nxt.start, nxt.end, "NAME", "cue"))
                            continue
                    elif not (w in ("dr", "mr", "mrs") and nxt is not None and nxt.text[:1].isupper()):
                        # "ms." with its period is a title too ("ms. pappas"); bare "ms" is MS or mental status
                        if lower_name and (w in ("dr", "mr", "mrs") or w == "ms" and dotted):
                            spans.append(Span(nxt.start, nxt.end, "NAME", "cue"))
                        continue
                while j < len(toks) and toks[j].lower in ("is", "was", "named", "name", "called", "'s"):
                    j += 1
                if j >= len(toks):
                    continue
                nxt = toks[j]
                if nxt.line_first:
                    continue  # "REC'D COLACE/MOM\nGU--": a cue never reaches into the next line
                if nxt.mode != t.mode and "\n" in text[t.end:nxt.start]:
                    continue  # "COLACE/MOM\nGU--": the next line is another section
                if w in RELATIONS and nxt.mode == "mixed" and not nxt.text[0].isupper() and \
                        self._bare_name_word(nxt) and nxt.fold not in _VERBISH:
                    # "son tony called", "friends lou and marge": in a mixed-case line a lower-case
                    # word after a relative is a name when a name list knows it and no word list does
                    end = j
                    if j + 1 < len(toks) and toks[j + 1].text.islower() and toks[j + 1].start - nxt.end == 1 and \
                            not toks[j + 1].line_first and self._bare_name_word(toks[j + 1]):
                        end = j + 1
                    spans.append(Span(nxt.start, toks[end].end, "NAME", "cue"))
                    spans.extend(self._coordinated(toks, end))
                    continue
                if w in RELATIONS and (nxt.mode == "mixed" and not nxt.text[0].isupper() or nxt.fold in _VERBISH):
                    continue  # "mother will be able", "wife Called"
                if w in ("father", "sister", "fr", "sr") and nxt.mode == "mixed" and self.strength(nxt) == "word":
                    continue
                if is_title and nxt.fold in _NOT_AFTER_TITLE:
                    continue
                got = self._take_name(toks, j, after_cue=True, limit=4 if w in TITLES else 3)
                if got is None and is_title and self._plain_word_after_title(toks[j]):
                    got = (j, j)  # "dr green aware", "Dr. Green": a title makes an everyday word a surname
                if got is None and j + 1 < len(toks) and toks[j].text.isalpha() and toks[j].fold not in STOPWORDS \
                        and toks[j + 1].start - toks[j].end == 1 and not toks[j + 1].line_first \
                        and self.strength(toks[j + 1]) == "strong":
                    got = (j, j + 1)  # "DAUGHTER ANIL FAIRWEATHER": a surname vouches for an everyday first name
                if got:
                    a, b = got
                    if w in RELATIONS and toks[a].mode != "mixed" and not any(
                            self.strength(toks[k]) in ("strong", "weak", "unknown") for k in range(a, b + 1)):
                        continue
                    spans.append(Span(toks[a].start, toks[b].end, "NAME", "cue"))
                    if w in RELATIONS:
                        spans.extend(self._coordinated(toks, b))
            # "Mary (wife)", "Mary, his wife", "DICK CUCCHIARA (RESIDENT)"
            if (w in RELATIONS or w in _ROLES_IN_PARENS and toks[i - 1].text == "(") and i >= 2:
                k = i - 1
                while k >= 0 and toks[k].lower in ("(", ",", "his", "her", "their", "the", "patient's", "pt's", "-"):
                    k -= 1
                if k >= 0 and k < i - 1 and toks[k].is_word:
                    end = k
                    while k - 1 >= 0 and toks[k - 1].is_word and self._nameish(toks[k - 1], True) and \
                            toks[k].start - toks[k - 1].end <= 1 and not toks[k].line_first and end - k < 2:
                        k -= 1
                    if all(self._nameish(toks[x], True) and (toks[x].mode != "mixed" or toks[x].text[0].isupper())
                           for x in range(k, end + 1)) and \
                            any(self.strength(toks[x]) in ("strong", "weak", "unknown") for x in range(k, end + 1)):
                        spans.append(Span(toks[k].start, toks[end].end, "NAME", "cue"))
        return spans

    def _plain_word_after_title(self, tok: Token, caseless: bool = False) -> bool:
        if not tok.is_word or len(tok.text) < 2 or tok.fold in STOPWORDS or tok.fold in _NOT_AFTER_TITLE:
            return False
        if tok.mode == "mixed" and not caseless and not tok.text[0].isupper():
            return False
        return not (tok.fold in MONTHS or tok.fold in WEEKDAYS or tok.fold in TITLES or tok.fold in CREDENTIALS)

    def _credentials(self, toks: list[Token]) -> list[Span]:
        """``John Smith, MD``, ``J. SMITH RN``, ``-- Jane Doe, NP``."""
        spans = []
        for i, t in enumerate(toks):
            if t.lower not in CREDENTIALS and not (t.lower in ("m", "d", "r") and i + 2 < len(toks)):
                continue
            if t.lower in ("m", "d", "r"):
                # M.D. / D.O. / R.N.; a lone "R" is right ("ARMS R AND L", "R. FEMORAL")
                if not (toks[i + 1].text == "." and toks[i + 2].lower in {"m": ("d",), "d": ("o",), "r": ("n",)}[t.lower]):
                    continue
            if t.lower in ("do", "pa", "ms", "ma", "pt", "ot", "od") and t.text.islower():
                continue
            k = i - 1
            if k >= 0 and toks[k].text == ",":
                k -= 1
            elif k >= 0 and t.lower in ("do", "pa", "ms", "ma", "pt", "ot", "od", "rn", "np"):
                # these need the comma ("pt ambulating", "do not"), except after a first name or
                # surname that is no ordinary or clinical word: "called kate RN", "per SUSAN NP"
                if t.lower in ("rn", "np") and self._bare_name_word(toks[k]):
                    spans.append(Span(toks[k].start, toks[k].end, "NAME", "cue"))
                continue
            end = k
            while k >= 0 and end - k < 4:
                tk = toks[k]
                if tk.text == "." and k - 1 >= 0 and toks[k - 1].is_initial:
                    k -= 1
                    continue
                caseless_ok = tk.mode == "mixed" or self.strength(tk) in ("strong", "weak") or len(tk.text) == 1
                if tk.is_word and (tk.text[0].isupper() or tk.mode != "mixed") and tk.fold not in STOPWORDS \
                        and self.strength(tk) != "word" and tk.lower not in CREDENTIALS and caseless_ok:
                    # in ALL-CAPS or lower-case lines an unknown word before "PA"/"PT" is shorthand or a
                    # typo ("ASSYMPTOMATIC, PA P'S", "LYTE REPLETION, PT NEEDS"), not a name
                    k -= 1
                    continue
                break
            if k < end:
                spans.append(Span(toks[k + 1].start, toks[end].end, "NAME", "cue"))
        return spans

    def _bare_name_word(self, tok: Token) -> bool:
        """A dictionary first name or surname that no word list knows as anything else."""
        w = tok.fold
        return tok.is_word and tok.text.isalpha() and len(w) >= 2 and self.lex.is_name(w) and not (
            self.lex.is_word(w) or self.lex.is_common(w) or w in self.lex.clinical or w in STOPWORDS
            or w in MONTHS or w in WEEKDAYS or w in TITLES or w in CREDENTIALS or w in INTERJECTIONS
            or self.lex.is_medical_proper(w))

    def _coordinated(self, toks: list[Token], b: int) -> list[Span]:
        """The second of two relatives' names: "sons Tom and Jerry", "friends lou & marge"."""
        if b + 2 >= len(toks) or toks[b + 1].lower not in ("and", "&") or toks[b + 2].line_first:
            return []
        t = toks[b + 2]
        capital = t.mode == "mixed" and t.text[0].isupper() and self.strength(t) in ("strong", "weak", "unknown")
        return [Span(t.start, t.end, "NAME", "cue")] if capital or self._bare_name_word(t) else []

    def _closing_initials(self, text: str) -> list[Span]:
        """A writer's initials that end a note: "... will cont to monitor. E", "...plan as
        above.\nB", "awaiting labs.  jm", "-- J.M." (one to three letters, alone after a
        sentence end, a line break, a dash or a wide gap). Two- and three-letter endings that
        are words or clinical abbreviations ("ok", "RN", "prn") are not initials."""
        m = _CLOSING_INITIALS.search(text)
        if not m:
            return []
        letters = m.group(1).replace(".", "").lower()
        if len(letters) > 1 and (self.lex.is_word(letters) or self.lex.is_common(letters) or letters in STOPWORDS
                                 or letters in INTERJECTIONS
                                 or letters in self.lex.clinical or letters in CREDENTIALS or letters in TITLES):
            return []
        return [Span(m.start(1), m.end(1), "NAME", "rule")]

    def _dictionary(self, toks: list[Token]) -> list[Span]:
        spans = []
        i, n = 0, len(toks)
        while i < n:
            t = toks[i]
            if not t.is_word or not self._nameish(t, False) and not (t.mode == "mixed" and t.is_initial):
                i += 1
                continue
            # grow a chain of adjacent name-ish words (mixed: capitalized; caseless: dictionary)
            j, words = i, []
            while j < n:
                tj = toks[j]
                if words and (tj.start - toks[j - 1].end > 1 or tj.line_first):
                    break
                if tj.text == "." and words and toks[words[-1]].is_initial:
                    j += 1
                    continue
                if tj.text in ("-",) and words and j + 1 < n and toks[j + 1].start == tj.end and toks[j + 1].is_word \
                        and toks[j + 1].text[0].isupper():
                    j += 1
                    continue
                if tj.is_word and tj.mode == "mixed" and tj.fold in _PARTICLES and words and j + 1 < n \
                        and toks[j + 1].text[:1].isupper():
                    j += 1
                    continue
                if tj.is_word and (self._nameish(tj, False) or tj.mode == "mixed" and tj.is_initial):
                    words.append(j)
                    j += 1
                    continue
                break
            if words:
                span = self._judge_chain(toks, words)
                if span:
                    spans.append(span)
            i = max(j, i + 1)
        return spans

    def _judge_chain(self, toks: list[Token], words: list[int]) -> Span | None:
        classes = [self.strength(toks[k]) for k in words]
        first, last = toks[words[0]], toks[words[-1]]
        nxt = self._next_word(toks, words[-1])
        if nxt is not None and (nxt.fold in MEDICAL_FOLLOWERS or nxt.lower in ("'s",)):
            return None
        if "strong" not in classes and any(
                toks[k].fold in _ROLE_FOLLOWERS for k in range(words[-1] + 1, min(words[-1] + 3, len(toks)))):
            return None  # "Cardic Transplant surgeon", "Kendall team": a service
        if last.text.endswith(("'s", "\u2019s")) and nxt is not None and nxt.fold in MEDICAL_FOLLOWERS:
            return None
        if first.mode != "mixed":
            if "strong" in classes:
                keep = [k for k, c in zip(words, classes) if c in ("strong", "weak")]
                end = keep[-1]
                # "LEONA LABOWICH": an unknown word right after a first name is its surname
                if toks[end].fold in self.lex.first and end + 1 < len(toks) and \
                        toks[end + 1].start - toks[end].end == 1 and not toks[end + 1].line_first and toks[end + 1].text.isalpha() and \
                        len(toks[end + 1].text) >= 3 and self.strength(toks[end + 1]) == "unknown":
                    end += 1
                return Span(toks[keep[0]].start, toks[end].end, "NAME", "dict")
            return None
        real = [c for c in classes if c != "initial"]
        if not real:
            return None
        if "word" in classes and "strong" not in classes:
            return None  # "Past Medical History", "Kelly Clamp"
        if any(toks[k].text.isupper() and len(toks[k].text) > 1 for k in words) and \
                not any(toks[k].text[1:].islower() for k in words if len(toks[k].text) > 1):
            # an ALL-CAPS chain inside a mixed line ("CT", "ICU", a heading): only unambiguous names
            if "strong" not in classes:
                return None
        strong = classes.count("strong")
        weak = classes.count("weak")
        unknown = classes.count("unknown")
        initials = classes.count("initial")
        sentence_start = first.initial_pos
        if strong:
            if len(words) == 1 and sentence_start and (self.lex.is_medical_proper(first.fold)):
                return None
        elif weak + unknown >= 2 and weak >= 1 and not sentence_start and (
                unknown or first.fold in self.lex.first):
            pass  # "Grace Brown", "Szabina Brown"; not "Plan Number"
        elif (weak or unknown) and initials:
            # "J. Brown", "Brown J."; not "Repleating K+" (a sentence's first word and a lab letter)
            dotted = words[-1] + 1 < len(toks) and toks[words[-1] + 1].text == "."
            if sentence_start and classes[-1] == "initial" and not dotted:
                return None
        elif weak == 1 and len(words) == 1:
            w = first.fold
            if sentence_start or self.lex.is_medical_proper(w) or w in self.lex.clinical:
                return None
        else:
            return None
        # trim non-name words at the edges (capitalized clinical words)
        keep = [k for k, c in zip(words, classes) if c != "word"]
        a, b = keep[0], keep[-1]
        end = toks[b].end
        if b + 1 < len(toks) and toks[b + 1].text == "." and toks[b].is_initial:
            end = toks[b + 1].end
        return Span(toks[a].start, end, "NAME", "dict")

    @staticmethod
    def _next_word(toks: list[Token], k: int) -> Token | None:
        j = k + 1
        while j < len(toks) and toks[j].text in ("'", "\u2019", "-"):
            j += 1
        return toks[j] if j < len(toks) else None

    # "Smith, John" / "SMITH, JOHN A" in headers and lists
    _LAST_FIRST = re.compile(r"\b([A-Z][A-Za-z'\u2019-]+),\s*([A-Z][A-Za-z'\u2019-]+)(?:\s+([A-Z])\b\.?)?")

    def _last_first(self, text: str) -> list[Span]:
        out = []
        for m in self._LAST_FIRST.finditer(text):
            last, first = m.group(1).lower(), m.group(2).lower()
            if last in self.lex.last and first in self.lex.first and not (
                    self.lex.is_common(last) and self.lex.is_common(first)):
                out.append(Span(m.start(), m.end(), "NAME", "dict"))
        return out
