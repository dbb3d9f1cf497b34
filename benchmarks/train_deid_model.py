"""Train the learned PHI tagger shipped in ``filters/deid/model`` (reproducibly, on CPU).

    python benchmarks/train_deid_model.py --seed 0
    python benchmarks/train_deid_model.py --seed 0 --dev /work/physionet_dev/gold_dev.jsonl

Training data holds no real PHI. It is real clinical text (MTSamples transcriptions,
MTS-Dialog section texts and dialogues, Synthea notes, read from ``--data``) into which
synthetic PHI is written: names, towns and hospitals from meddata's surrogate pools
(``filters/deid/data``), dates, phone numbers and record numbers made up here, in the shapes
real notes use (mixed case, ALL-CAPS nursing shorthand, all lower-case lines, cue words such
as "dr smith aware", "wife jane called", "d/c'd 7/22", "MI '92"), together with clinical
lines that hold no PHI at all (drugs, eponyms, exam shorthand, ranges, vent settings).
Placeholders and PHI-like strings already in the sources ("Mr. ABC", "Dr. Kumar", dates) are
rewritten to surrogates and labelled, so no unlabelled identifier teaches the model to skip one.

With ``--dev`` (the PhysioNet development gold, PHI already replaced by surrogates), notes of
patients ``--dev-train`` (default 1-10) join the training data and patients ``--dev-valid``
(default 11-17) are scored; no other patient is ever read. The corpus gold is untyped: its
spans get a type from their shape (digits -> DATE/PHONE/ID, facility words -> HOSPITAL, towns
-> LOCATION, else NAME). Each training note is used once as written and ``--dev-repeat`` - 1
more times with its PHI swapped for other surrogates (and sometimes re-cased).

The model is spaCy ``ner`` on a small hashed-embedding CNN trained from scratch (no word
vectors, no other package), about 3 MB. Written to ``--out`` with ``info.json`` (version,
data summary, scores). About 7 CPU minutes on one core; the same seed gives the same weights.
``--speed CHARS`` only measures the shipped model's load time and characters per second.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data"
if not DEFAULT_DATA.exists():
    DEFAULT_DATA = Path("/work/shared/data")
GOLD_SETS = {"clinical_gold": ("clinical_gold.jsonl", "all"), "asq_phi": ("asq_phi_subset.jsonl", "over_89"),
             "presidio_synth": ("presidio_synth_subset.jsonl", "over_89")}
LABELS = ("NAME", "LOCATION", "HOSPITAL", "DATE", "AGE", "PHONE", "ID", "EMAIL")
VERSION = "1.0"

Piece = tuple[str, str | None]  # (text, label or None)


# ---------------------------------------------------------------------------------------
# Surrogate values
# ---------------------------------------------------------------------------------------
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"]
_ORD_WORDS = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth",
              "eleventh", "twelfth", "thirteenth", "fourteenth", "fifteenth", "sixteenth", "seventeenth",
              "eighteenth", "nineteenth", "twentieth"]
_TENS = {90: "ninety", 80: "eighty"}
_UNITS = ["", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
_RELATIVES = ["wife", "husband", "son", "daughter", "dtr", "sister", "brother", "mother", "father", "mom", "dad",
              "niece", "nephew", "grandson", "granddaughter", "friend", "neighbor", "girlfriend", "boyfriend",
              "partner", "HCP", "health care proxy", "cousin", "aunt", "uncle", "sons", "daughters", "fiance"]
_STAFF = ["RN", "NP", "PA", "MD", "resident", "intern", "fellow", "attending", "SW", "social worker",
          "case manager", "PT", "OT", "RT", "chaplain", "nurse", "charge RN", "CM", "dietician", "HO"]
_DR = ["Dr.", "Dr", "dr", "DR.", "DR", "Doctor", "dr."]
_EVENTS = ["MI", "CVA", "CABG", "AVR", "MVR", "PTCA", "stent", "TIA", "PE", "DVT", "CHF", "appy", "chole",
           "TAH", "THR", "TKR", "ORIF", "PPM", "AICD", "lap chole", "s/p CABG", "s/p MI", "dx", "diagnosed",
           "cath", "echo", "colonoscopy", "hernia repair", "L TKR", "R THR", "IMI", "NSTEMI", "PNA", "UTI", "sz"]
_STREETS = ["St", "St.", "Street", "Ave", "Avenue", "Rd", "Road", "Dr", "Drive", "Lane", "Ln", "Way", "Blvd",
            "Court", "Ct", "Terrace", "Place", "Circle", "Hwy"]
_FACILITY = ["Hospital", "Medical Center", "General", "General Hospital", "Memorial", "Memorial Hospital",
             "Regional", "Regional Medical Center", "Clinic", "Rehab", "Rehabilitation Center", "Nursing Home",
             "Health Center", "Community Hospital", "Med Ctr", "Hosp", "Hospice", "Manor", "House",
             "Center for Rehab", "Infirmary", "Health Care", "Senior Living", "VA", "VAMC", "ER", "ED"]
_WARD_NUMS = [str(n) for n in range(2, 13)] + ["4 East", "7 North", "10", "6 West", "2B", "3A"]
_TAILS = ["yesterday", "today", "this am", "overnight", "early this am", "last night", "w/o incident", "for eval",
          "and updated", "at 3pm", "x2", "again", "re: plan", "with questions", "this shift", "for further w/u",
          "prior to admission", "in the past", "and was normal", "of neurology", "on days", "twice", "as well",
          "who is aware", "at bedside", "via ambulance", "for rehab", "later today", "(see above)", "about pt"]
_STATES = ["MA", "NY", "CT", "NH", "RI", "ME", "VT", "NJ", "PA", "MD", "FL", "CA", "TX", "OH", "VA", "Mass",
           "Massachusetts", "Maryland", "Florida", "New York"]


class Values:
    """Random PHI values in many written shapes, drawn from meddata's surrogate pools."""

    def __init__(self, rng: random.Random):
        from meddata.filters.deid.dictionaries import DATA, lexicon

        lex = lexicon()
        self.rng = rng
        self.first = list(lex.surrogate_first)
        self.last = list(lex.surrogate_last)
        # names that are also words ("bill", "grace", "pat"): rarer, but they must be learned from context
        self.ambiguous_first = sorted(w for w in lex.ambiguous if w in lex.first and w.isalpha() and len(w) > 2)
        self.ambiguous_last = sorted(w for w in lex.ambiguous if w in lex.last and w.isalpha() and len(w) > 2)
        self.cities = [c for c in lex.surrogate_cities if len(c) > 3]
        self.hospitals = [h for h in (ln.strip() for ln in (DATA / "hospitals.txt").read_text().splitlines())
                          if h and not h.startswith("#")]

    def pick(self, seq):
        return seq[self.rng.randrange(len(seq))]

    def first_name(self) -> str:
        r = self.rng.random()
        if r < 0.12 and self.ambiguous_first:
            return self.pick(self.ambiguous_first).title()
        return self.pick(self.first)

    def last_name(self) -> str:
        r = self.rng.random()
        if r < 0.08 and self.ambiguous_last:
            return self.pick(self.ambiguous_last).title()
        name = self.pick(self.last)
        if self.rng.random() < 0.05:
            name = name + "-" + self.pick(self.last)
        return name

    def initials(self) -> str:
        a, b = chr(65 + self.rng.randrange(26)), chr(65 + self.rng.randrange(26))
        return self.pick([f"{a}.{b}.", f"{a}{b}", f"{a.lower()}.{b.lower()}.", f"{a}", f"{a.lower()}",
                          f"{a}.", f"{a}{b}{chr(65 + self.rng.randrange(26))}", f"{a.lower()}{b.lower()}"])

    def person(self) -> str:
        r = self.rng.random()
        if r < 0.35:
            return self.last_name()
        if r < 0.6:
            return self.first_name()
        if r < 0.85:
            return f"{self.first_name()} {self.last_name()}"
        if r < 0.92:
            return f"{self.first_name()[0]}. {self.last_name()}"
        return f"{self.last_name()}, {self.first_name()}"

    def city(self) -> str:
        return self.pick(self.cities)

    def hospital(self) -> str:
        r = self.rng.random()
        if r < 0.15:
            return self.pick(self.hospitals)
        if r < 0.3:
            saint = self.pick(self.first)
            return self.pick([f"St. {saint}'s", f"St {saint}", f"Saint {saint}'s", f"St. {saint}",
                              f"St. {saint}'s Hospital", f"St {saint}s"])
        if r < 0.5:
            return f"{self.city()} {self.pick(_FACILITY)}"
        if r < 0.7:
            return f"{self.last_name()} {self.pick(_FACILITY)}"
        if r < 0.78:
            return f"University of {self.pick([self.city(), 'Maryland', 'Massachusetts', 'Vermont', 'Chicago'])}"
        if r < 0.86:
            return f"{self.last_name()}"  # bare facility names: "pt transferred from quartermain"
        return f"{self.city()}"

    def ward(self) -> str:
        return f"{self.last_name()} {self.pick(_WARD_NUMS)}"

    def address(self) -> str:
        num = str(self.rng.randrange(1, 9999))
        return f"{num} {self.last_name()} {self.pick(_STREETS)}"

    def zip_code(self) -> str:
        return f"{self.rng.randrange(1000, 99999):05d}"

    def date(self) -> str:
        rng = self.rng
        m, d = rng.randrange(1, 13), rng.randrange(1, 29)
        y = rng.randrange(1930, 2030)
        yy = f"{y % 100:02d}"
        mon = _MONTHS[m - 1]
        shapes = [f"{m}/{d}", f"{m}/{d}", f"{m}/{d}", f"{m:02d}/{d:02d}", f"{m}/{d}/{yy}", f"{m}/{d}/{y}",
                  f"{m:02d}/{d:02d}/{y}", f"{m}-{d}", f"{m}-{d}-{yy}", f"{m}.{d}.{yy}", f"{mon} {d}",
                  f"{mon[:3]} {d}", f"{mon} {d}, {y}", f"{mon[:3]}. {d}", f"{d}-{mon[:3]}", f"{d}-{mon[:3]}-{yy}",
                  f"{mon} {y}", f"{mon[:3]} {y}", f"'{yy}", f"{y}", f"{y}", f"{y}-{m:02d}-{d:02d}",
                  f"{mon} {d}{_suffix(d)}", f"{d}{_suffix(d)}", f"the {d}{_suffix(d)}", f"{m}/{yy}", f"{m}/{y}",
                  f"{mon} {_ORD_WORDS[d - 1] if d <= 20 else 'twenty ' + _ORD_WORDS[(d - 21) % 9]}",
                  f"{d} {mon}", f"{d} {mon[:3]} {y}", f"{mon}"]
        return self.pick(shapes)

    def year(self) -> str:
        y = self.rng.randrange(1940, 2024)
        return self.pick([f"'{y % 100:02d}", f"{y % 100:02d}", f"{y}", f"{y}"])

    def phone(self) -> str:
        rng = self.rng
        a, b, c = rng.randrange(201, 990), rng.randrange(201, 999), rng.randrange(0, 10000)
        return self.pick([f"({a}) {b}-{c:04d}", f"{a}-{b}-{c:04d}", f"{a} {b} {c:04d}", f"{a}.{b}.{c:04d}",
                          f"({a}){b}-{c:04d}", f"{b}-{c:04d}", f"{a}{b}-{c:04d}", f"{a}-{b}{c:04d}",
                          f"1-{a}-{b}-{c:04d}", f"+1 {a} {b} {c:04d}", f"{a}/{b}-{c:04d}"])

    def pager(self) -> str:
        rng = self.rng
        return self.pick([f"{rng.randrange(10000, 99999)}", f"{rng.randrange(1, 10)}-{rng.randrange(1000, 9999)}",
                          f"x{rng.randrange(1000, 99999)}", f"#{rng.randrange(1000, 99999)}",
                          f"{rng.randrange(100, 999)}-{rng.randrange(1000, 9999)}"])

    def ident(self) -> str:
        rng = self.rng
        return self.pick([f"{rng.randrange(10**6, 10**8)}", f"{rng.randrange(100, 999)}-{rng.randrange(10, 99)}-"
                          f"{rng.randrange(10, 99)}", f"{rng.randrange(10**4, 10**6)}",
                          f"{chr(65 + rng.randrange(26))}{chr(65 + rng.randrange(26))}{rng.randrange(10**5, 10**7)}",
                          f"{rng.randrange(100, 999)}-{rng.randrange(10, 99)}-{rng.randrange(1000, 9999)}"])

    def old_age(self) -> str:
        n = self.rng.randrange(90, 106)
        if self.rng.random() < 0.15 and n < 100:
            return f"{_TENS[90]} {_UNITS[n - 90]}".strip() if n > 90 else "ninety"
        return str(n)

    def young_age(self) -> str:
        return str(self.rng.randrange(18, 90))

    def email(self) -> str:
        return f"{self.first_name().lower()}.{self.last_name().lower()}@{self.pick(['gmail.com', 'yahoo.com', 'aol.com', 'comcast.net', 'partners.org'])}"


def _suffix(d: int) -> str:
    return "th" if 11 <= d % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(d % 10, "th")


# ---------------------------------------------------------------------------------------
# Templates: {SLOT} is PHI (labelled), {lower} slots are context words (never labelled)
# ---------------------------------------------------------------------------------------
PHI_TEMPLATES = """
{dr} {L} aware|{dr} {L} notified of above|seen by {dr} {L}|per {dr} {L}|discussed w/ {dr} {L}
{dr} {L} in to see pt|{dr} {P} paged|{L} paged re: low uo|paged {dr} {L} x2|{dr} {L} made aware, no new orders
{rel} {F} called|{rel} {F} in to visit|{rel} {F} updated on pt status|{rel} {P} called for update
{rel} {F} at bedside|pt's {rel} {F} called this am|family ({rel} {F} and {rel} {F}) in to visit
{F} ({rel}) called|spoke with {F} from case mgmt|per {staff} {I}|{I} RN|- {I}|{P}, RN|{F} {L} RN
Attending: {P}, MD|HCP is {rel} {F}|{rel} is {P}, {PH}|Mr. {L}|Mrs. {L}|Ms {L}|pt {L} resting comfortably
PCP {dr} {L}|PCP: {P}|{staff} {F} aware|cc: {dr} {L}|{I}/{I}|cardiology ({dr} {L}) consulted
{dr} {L}'s team aware|{L} team aware|called {dr} {L} at {PG}|dictated by {P}|{F} is a {ya} yo with hx of CHF
pt seen by {staff} {F}|d/w {L}|s/o {dr} {L}|ortho ({L}) following|plan per {dr} {L} and {dr} {L}
{L} MD|{P}, MD|{F} ({staff})|report given to {F} RN|report to {F}, {staff} on {W}|{rel} {F} would like a call at {PH}
{F} called from {H}|covering for {dr} {L}|{P} from social work following|pt's name is {F}|pt prefers to be called {F}
{rel} {F} and {rel} {F} here all day|{rel}, {F}, is HCP|{F} {L} ({rel}) is HCP|per {rel} {F}, pt fell at home
{staff} {F} to see pt in am|{dr} {L} (cards) aware|{dr}. {L} called back|discussed with {dr} {L} and {staff} {F}
{dr} {L} at bedside for intubation|{I} to f/u|noted by {I}|{L} residence|{rel} ({F}) updated by phone
lives in {C}|lives alone in {C}|lives with {rel} in {C}, {state}|from {C}|pt from {C}|{C} police|{C} fire dept
moved here from {C}|resident of {C}|home in {C}|{A}|{A}, {C}, {state} {Z}|lives at {A}|{C} EMS|EMS from {C}
visiting from {C}|{C}, {state}|works in {C}|born in {C}|{rel} drove from {C}|{rel} lives in {C}|{C} {Z}
transferred from {H}|pt transferred from {H}|OSH ({H})|admitted to {H}|d/c to {H}|to {W}|transfer to {W} when bed available
on {W}|EMS to {H} ED|f/u at {H}|records from {H}|seen at {H} in {Y}|{H} ED|presented to {H}|cath at {H}
initially taken to {H}|will go to {H} rehab|screened by {H}|accepted at {H}|back to {H} nursing home|from {H} rehab
{H} notified|called {H} for records|transfer back to {H} for rehab|d/c'd to {H} {D}|tx to {W} today|{W} called for report
d/c'd {D}|d/c {D}|f/u {D}|f/u on {D}|{ev} {Y}|{ev} in {Y}|on {D}|last seen {D}|admitted {D}|adm {D}|since {D}
{D} CT head neg|{D}: CXR no change|s/p {ev} {D}|dated {D}|started {D}|cx from {D} neg to date|line placed {D}
line day #{n} ({D})|appt {D}|due {D}|last BM {D}|extubated {D}|intubated {D}|{D} echo: EF 30%|sputum cx {D} pending
Date: {D}|DOB {D}|DOB: {D}|born {D}|{ev} ({Y})|hx {ev} {Y} and {ev} {Y}|vanco started {D}|stop date {D}|{ev} {Y}, {ev} {Y}
call {rel} at {PH}|{rel}'s cell {PH}|pager {PG}|beeper #{PG}|page {dr} {L} at {PG}|cell {PH}|tel {PH}|home # {PH}
contact {rel} @ {PH}|phone: {PH}|ph {PH}|{rel} {F} ({PH})|{rel} ({PH})|can be reached at {PH}|fax {PH}|call back # {PH}
MRN {ID}|MR# {ID}|MRN: {ID}|#{ID}|acct {ID}|unit no {ID}|ID {ID}|SSN {ID}|medicare # {ID}|ins. id {ID}|med rec # {ID}
{AGE} yo|{AGE} y/o F|{AGE} yo M|{AGE} year old|{AGE} year-old|{AGE}M|{AGE}F|age {AGE}|aged {AGE}|pt is a {AGE} y.o. female
{AGE} yr old|will be {AGE} next month|email {EM}|{EM}|a pleasant {AGE} year old gentleman|{P}, {AGE} y/o, home address {A}
Patient: {P}   MRN: {ID}|Name: {L}, {F}   Acct #: {ID}|Sincerely,\\n{P}, MD|Dear Dr. {L},|Dear {F},
Electronically signed by {P} on {D}|SURGEON: {P}, MD|ASSISTANT: {P}, PA-C|cc: {P}, MD, {C}|From: {H}   To: {H}
Insurance ID {ID}|Medicare ID {ID}|Emergency contact: {P} ({rel}) {PH}|home address {A}, {C}, {state}
Report called to {F}, RN|grew up in {C} and moved to {C} in {Y}|went to visit family in {C}|spoke with {F}'s {rel}, {F}, at {PH}
Dictated by: {P}, MD\\n{I}/{I}|D: {D}  T: {D}|Telephone encounter {D} 10:15am|NURSING NOTE {D} 0700-1900|{D} 1900-0700
Accepting physician: {P}|Referring physician: {P}, MD|PCP: {dr} {P}|Admission Date: {D}   Discharge Date: {D}
DOB: {D}   Age: {AGE}|Date of service: {D}|Seen: {D} 14:32|Return visit with {dr} {L} at {H} in two weeks ({D})
{P}, a {ya}-year-old man, presents with chest pain|treatment options for {P} after hip surgery on {D}
{P} (DOB {D}) was admitted to {H}|patient {P} reports worsening cough|{P} is a {ya} y/o woman with DM2|for {P}, MRN {ID}
how should we manage {P}'s warfarin after discharge from {H}|{F} {L}'s labs from {D}|case of {P}, seen at {H} on {D}
{F} returns for follow-up|{F} is doing well|{P} was seen and examined|{rel}, {P}, at bedside|{P}, LICSW|{P}, RN, BSN
{P}, RRT|\\n{F} {I} {L}, RRT|{F} {L}, RN\\n|met w/ caseworker {P}|to meet {I} {L} from {H}|husband {P} in to visit
followed at {H} by {dr} {L}|seen by {H} nurse for arrangements|transferred to the {L} campus|knows she is in {H}
-- {F} RN|- {F} RN|{F}/RN|{L}/{I}|{P} (cardiology fellow)|{H}\\n{A}, {C}, {state} {Z}|Phone {PH} | Fax {PH}
"""
DIALOG_TEMPLATES = """
my name is {P}|my daughter {F} brings me|I live in {C}|I was at {H} last {D}|I'll be {AGE} this month|call me at {PH}
Doctor {L} told me|I had a heart attack in {Y}|my son {F} lives in {C}|{dr} {L} sent me|I saw {dr} {L} on {D}
my wife {F} is here|I'm {AGE} years old|I work at {H}|I moved from {C} in {Y}|my number is {PH}
"""
NEG_TEMPLATES = """
dr aware|md aware|HO aware|team aware|RN aware|wife at bedside|family in to visit|son called for update|dtr updated
pt's wife called|family meeting planned for {wday}|will d/c foley today|f/u with PCP|f/u w/ cardiology
transferred from OSH|pt transferred from the ED|to floor when bed available|{ya} yo M|{ya} y/o F|pt is {ya}
PERRLA|PERLA|perrla|MAE|A&Ox3|{s5}/5 strength bilat|motor {s5}/5|strength {s5}/5 LUE|PSV {ps}/5|PS {ps}/5 FiO2 {fio2}%
CPAP {ps}/5|vent AC 500x14/5/50%|RR {lo}-{hi}|HR {hr}-{hr2}s NSR|SBP 90-100s|K {n}-{n2}|UO {lo}-{hi}cc/hr|{n}-{n2}L NC
sats 95-98%|BP {sbp}/{dbp}|given {n}-{n2} mg morphine|vanco 1gm IV q12|Natrecor gtt @ 0.01|Nepro @ {lo}cc/hr
Charcot-Marie-Tooth|bair hugger on|Penrose drain intact|foley draining clear yellow urine|swan in place
levophed weaned to off|lasix 40mg IV given with good response|zosyn/vanco|NTG gtt|abx per ID|d/c'd NTG|on coumadin
sliding scale RISS|OOB to chair|dobhoff placed|trach care done|PEG site c/d/i|Parkinson's disease|Babinski neg
Homan's neg|Murphy's sign neg|GCS {lo}|Apgar 8/9|ST HR 100-110|CSRU|MICU|SICU|CCU|to cath lab|NPO after MN
G1P1|ETT 7.5 @ 22 at lip|fent 50mcg/hr|propofol @ 30mcg/kg/min|insulin gtt per protocol|BS 150-200|WBC 12.3
Hct 28->30|plan: cont to monitor|ABG 7.35/45/80|on {wday}|this am|this eve|noc|qhs|prn|SEE FLOWSHEET|GIVEN
BLOOD CX SENT|ENGLISH SPEAKING|accu checks|tolerating custard|1/2 NS @ 100|D5 1/2NS|rales 1/3 up|grade 2/6 murmur
pain {n}/10|pain 0/10|Tmax 101.2|I/O +1L|LOS +5L|3+ pitting edema|1+ pulses|ID: afebrile, wbc trending down
Neuro: alert, follows commands|Resp: LS coarse bilat, sx for thick tan secretions|CV: NSR 80s-90s, no ectopy
GI: abd soft, +BS|GU: foley patent|Skin: intact|Social: wife in to visit|Plan: wean vent as tolerated
Integra in place|on Medicaid|Ortho Tri-Cyclen|Citrucel daily|Mavik|Tarka|ntg sl x1|nepro at goal|abx: vanco/zosyn
Kayexalate given|Lovenox SQ|Heparin gtt @ {lo}u/hr|Flagyl|Protonix|Reglan|Tylenol 650 PR|Ativan 1mg IV x1
Cx sent|CXR done|EKG: SR, no ST changes|Bowel regimen|Hickman c/d/i|Groshong|Jackson-Pratt drain|Pleurevac
Swan-Ganz|Doppler pulses|Allen's test neg|Glasgow {lo}|Hgb A1c 7.2|Brudzinski neg|Kernig neg|Romberg neg
Cheyne-Stokes resp|Mallory-Weiss tear|Guillain-Barre|Wolff-Parkinson-White|Hodgkin's|Bell's palsy|Down syndrome
Kussmaul resp|Trendelenburg|Fowler's position|Stryker frame|Ambu bag|Yankauer|Bovie|Ace wrap|Kerlix|Xeroform
0700-1900|1900-0700|7p-7a|7a-7p|0700-1500|at 2200|10:15am|Internal Medicine|Pulmonary rehab|Refill sent to pharmacy
SpO2 94% RA|Code status: full code|Dispo: admit to medicine|Allergies: NKDA|Discharge Diagnoses:|Follow-up:
PA {pa} CVP {lo}-{hi}|PAD's in {n}0's|TV {tv}-{tv}|ABG 7.{n}{n}/{n}{n}/{hi}/{n}{n}/-{n}|bs {hi}-{hi}|FS {hi}-{hi}|WBC up to {n}.{n} ({lo})
PCW {lo}|wedge {lo}-{hi}|maps {lo}|sats {lo}-{hi}%|x {n}-{n2} breaths|PIV #{lo} & {lo}|CI 2.{n}, SVR {hi}0|CO {n}.{n}
am labs: k {n}.{n}, mg {n}.{n}|creat {n}.{n}({n}.{n})|hct {lo}->{lo}|FiO2 {lo}%/peep {n}|SIMV {lo}/{tv}/{n}/{lo}%
pa numbers {pa}|stat echo|visiting|H.O. notified|primary team aware|multiple phone calls|hospice/VNA visits|LP/CT head done
pt intubated in ER|admitted to hosp|stat CXR|to be seen by transplant team|seen by cardiac surgeon|in {n}0's|bs {hi}'s
Soc: husband and son in|social: husband visited|s/p MVR, LVEF <20%|GU irrigation|ate half of sandwich|OOB to chair all day
con't to monitor|CON'T ON HEPARIN @ {lo}0 U/HR|cont to diurese|remains on dopa @ {n} mcg/kg/min|looks comfortable
being weaned|tachypneic at times|lethargic but arousable|Continues on lasix gtt|Remains afebrile|Denies pain
Appears comfortable|Tolerating TF at goal|Awaiting bed on floor|Resting quietly|Sleeping at intervals|Received pt
Noted to have loose stool|Weaned to 2L NC|Titrated per protocol|Agitated at times|Restless overnight|qs uo
Surgeon in to see pt|Team aware of above|Family updated by MD|Husband in to visit|Wife called x2|legs up in air
Con't plan|CONT TO MONITOR|CONT CURRENT PLAN|cont abx|cont to wean|DENIES N/V|UA sent|ua+ for uti|s/p line change
MEDICATIONS ON ADMISSION:|Sincerely,|Dear colleague,|cc: chart|Electronically signed|Dictated but not read
ASA 325|MVI|Boost Plus|Ensure TID|Depends|Seroquel 25 qhs|Haldol 2mg IV|Zyprexa|Precedex gtt
"""


def _templates(block: str) -> list[str]:
    """One template per ``|``-separated item; ``\\n`` in a template is a line break."""
    return [t.strip().replace("\\n", "\n") for line in block.strip().splitlines() for t in line.split("|")
            if t.strip()]


class Generator:
    """Builds labelled training examples: real clinical text plus synthetic PHI (see module doc)."""

    SLOT = re.compile(r"\{(\w+)\}")

    def __init__(self, rng: random.Random, sources: dict[str, list[str]]):
        self.rng = rng
        self.v = Values(rng)
        self.sources = sources
        self.phi = _templates(PHI_TEMPLATES)
        self.dialog = _templates(DIALOG_TEMPLATES)
        self.neg = _templates(NEG_TEMPLATES)
        v = self.v
        num = lambda lo, hi: lambda: str(rng.randrange(lo, hi))  # noqa: E731
        # slot -> (value maker, label)
        self.slots: dict[str, tuple[Callable[[], str], str | None]] = {
            "P": (v.person, "NAME"), "F": (v.first_name, "NAME"), "L": (v.last_name, "NAME"),
            "I": (v.initials, "NAME"), "C": (v.city, "LOCATION"), "A": (v.address, "LOCATION"),
            "Z": (v.zip_code, "LOCATION"), "H": (v.hospital, "HOSPITAL"), "W": (v.ward, "HOSPITAL"),
            "D": (v.date, "DATE"), "Y": (v.year, "DATE"), "PH": (v.phone, "PHONE"), "PG": (v.pager, "PHONE"),
            "ID": (v.ident, "ID"), "AGE": (v.old_age, "AGE"), "EM": (v.email, "EMAIL"),
            "dr": (lambda: v.pick(_DR), None), "rel": (lambda: v.pick(_RELATIVES), None),
            "staff": (lambda: v.pick(_STAFF), None), "ev": (lambda: v.pick(_EVENTS), None),
            "state": (lambda: v.pick(_STATES), None), "ya": (v.young_age, None), "n": (num(1, 9), None),
            "n2": (num(2, 12), None), "s5": (num(3, 6), None), "ps": (num(5, 21), None),
            "fio2": (num(30, 101), None), "lo": (num(5, 60), None), "hi": (num(60, 200), None),
            "hr": (num(60, 100), None), "hr2": (num(80, 130), None), "sbp": (num(85, 180), None),
            "dbp": (num(40, 100), None), "tv": (num(300, 800), None),
            "pa": (lambda: f"{rng.randrange(25, 80)}-{rng.randrange(30, 90)}/{rng.randrange(10, 40)}"
                           f"{rng.choice(['', '-' + str(rng.randrange(15, 45)), 's'])}", None),
            "wday": (lambda: v.pick(["Monday", "Tuesday", "wed", "Thursday", "Friday", "Sat", "Sunday"]), None),
        }

    # -- template filling --------------------------------------------------------------
    def fill(self, template: str) -> list[Piece]:
        pieces: list[Piece] = []
        pos = 0
        for m in self.SLOT.finditer(template):
            if m.start() > pos:
                pieces.append((template[pos:m.start()], None))
            make, label = self.slots[m.group(1)]
            value = make()
            if label is not None:
                value = self._slot_case(value, label)
            pieces.append((value, label))
            pos = m.end()
        if pos < len(template):
            pieces.append((template[pos:], None))
        if self.rng.random() < 0.3:  # PHI is often followed by more words, not a full stop
            pieces.append((" " + self.rng.choice(_TAILS), None))
        return pieces

    def _slot_case(self, value: str, label: str) -> str:
        if label not in ("NAME", "LOCATION", "HOSPITAL"):
            return value
        r = self.rng.random()
        if r < 0.15:
            return value.lower()
        if r < 0.25:
            return value.upper()
        return value

    # -- example shapes ----------------------------------------------------------------
    def example(self) -> list[Piece]:
        r = self.rng.random()
        if r < 0.45:
            pieces = self._real_chunk()
        elif r < 0.85:
            pieces = self._nursing_note()
        else:
            pieces = self._dialogue()
        return self._case(pieces)

    def _sentences(self, source: str, k: int) -> list[list[Piece]]:
        docs = self.sources[source]
        doc = docs[self.rng.randrange(len(docs))]
        sents = _split_sentences(doc)
        if not sents:
            return []
        i = self.rng.randrange(len(sents))
        return [prelabel(s, self) for s in sents[i:i + k]]

    def _real_chunk(self) -> list[Piece]:
        source = self.rng.choice(["mtsamples", "mtsamples", "mts_dialog_notes", "synthea"])
        sents = self._sentences(source, self.rng.randrange(1, 6))
        n_phi = self.rng.choice([0, 1, 1, 2, 2, 3])
        n_neg = self.rng.choice([0, 0, 1, 2])
        parts = sents + [self.fill(self.rng.choice(self.phi)) for _ in range(n_phi)]
        parts += [self.fill(self.rng.choice(self.neg)) for _ in range(n_neg)]
        head = parts[:1]
        rest = parts[1:]
        self.rng.shuffle(rest)
        return self._join(head + rest)

    def _nursing_note(self) -> list[Piece]:
        parts: list[list[Piece]] = []
        for _ in range(self.rng.randrange(3, 12)):
            r = self.rng.random()
            if r < 0.55:
                part = self.fill(self.rng.choice(self.neg))
            elif r < 0.88:
                part = self.fill(self.rng.choice(self.phi))
            else:
                part = self._sentences(self.rng.choice(["mtsamples", "mts_dialog_notes"]), 1)
                part = part[0] if part else []
            if self.rng.random() < 0.25:
                part = [(self.rng.choice(["Neuro: ", "CV: ", "Resp: ", "GI: ", "GU: ", "Skin: ", "Social: ",
                                          "Plan: ", "ID: ", "Endo: ", "Heme: ", "Dispo: ", "A: ", "P: ",
                                          "Events: ", "NPN: ", "Nursing Progress Note: ", "Family: "]), None)] + part
            parts.append(part)
        return self._join(parts)

    def _dialogue(self) -> list[Piece]:
        turns = self._sentences("mts_dialog_turns", self.rng.randrange(1, 4))
        for _ in range(self.rng.choice([1, 1, 2])):
            who = self.rng.choice(["Patient: ", "Doctor: ", "Guest_family: "])
            turns.insert(self.rng.randrange(len(turns) + 1), [(who, None)] + self.fill(self.rng.choice(self.dialog))
                         + [(".", None)])
        return self._join(turns, seps=["\n"])

    def _join(self, parts: list[list[Piece]], seps: list[str] | None = None) -> list[Piece]:
        seps = seps or [". ", ". ", ".  ", "\n", "\n", ", ", "; ", " ", ".\n", " - "]
        sep_style = self.rng.choice(seps)
        out: list[Piece] = []
        for p in parts:
            if not p:
                continue
            if out:
                sep = sep_style if self.rng.random() < 0.7 else self.rng.choice(seps)
                if out[-1][0].rstrip().endswith((".", ":", "?", "!")) and sep.startswith("."):
                    sep = sep[1:] or " "
                out.append((sep, None))
            out.extend(p)
        return out

    def reshape(self, pieces: list[Piece]) -> list[Piece]:
        """A real note's chunk with its (surrogate) PHI replaced by other surrogates of the
        same type and letter case, and sometimes the whole chunk upper- or lower-cased: the
        model sees the note's real clinical words around ever different names."""
        makers = {"NAME": self.v.person, "LOCATION": self.v.city, "HOSPITAL": self.v.hospital,
                  "DATE": self.v.date, "PHONE": self.v.phone, "ID": self.v.ident, "AGE": self.v.old_age,
                  "EMAIL": self.v.email}
        out: list[Piece] = []
        for text, label in pieces:
            if label is not None and self.rng.random() < 0.8:
                if label == "NAME" and len(text.split()) == 1:
                    new = self.v.first_name() if self.rng.random() < 0.5 else self.v.last_name()
                else:
                    new = makers[label]()
                text = new.upper() if text.isupper() else new.lower() if text.islower() else new
            out.append((text, label))
        return self._case(out)

    def _case(self, pieces: list[Piece]) -> list[Piece]:
        r = self.rng.random()
        if r < 0.55:
            return pieces
        if r < 0.78:
            return [(t.upper(), lab) for t, lab in pieces]
        return [(t.lower(), lab) for t, lab in pieces]


_SENT = re.compile(r"(?<=[.!?])\s+(?=[A-Z])|\n+|,(?=[A-Z][A-Z ]+:)")


def _split_sentences(doc: str) -> list[str]:
    return [s.strip(" ,") for s in _SENT.split(doc) if len(s.strip(" ,")) > 3]


# ---------------------------------------------------------------------------------------
# Identifiers already present in the real sources: rewritten to surrogates and labelled
# ---------------------------------------------------------------------------------------
_MONTH_RE = r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sept?(?:ember)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)"
_EXISTING = re.compile(
    r"(?P<title>\b(?:Dr|Mr|Mrs|Ms|Miss|Doctor)\.?\s+)(?P<tname>[A-Z][a-zA-Z'-]+(?:\s+[A-Z][a-z][a-zA-Z'-]+)?)"
    r"|(?P<placeholder>\b(?:ABC|XYZ|Abc|Xyz|Abcd|ABCD|Xxxx+|XXXX+)\b)"
    r"|(?P<synthea>\b[A-Z][a-z]+\d{1,3}\b)"
    r"|(?P<date>\b\d{1,2}/\d{1,2}/\d{2,4}\b|\b(?:19|20)\d\d-\d\d-\d\d(?:T[\d:.+-]+)?\b|\b" + _MONTH_RE
    + r"\.?\s+\d{1,2}(?:st|nd|rd|th)?,?\s+(?:19|20)\d\d\b|\b" + _MONTH_RE + r"\.?\s+(?:of\s+)?(?:19|20)\d\d\b)"
    r"|(?P<cue>\b(?:in|since|from|of|until)\s+)(?P<year>(?:19|20)\d\d)\b(?!\s*(?:mg|mL|cc|units|patients))"
    r"|(?P<place>\b(?:in|from|to|near|at)\s+)(?P<city>[A-Z][a-z]+(?:\s+[A-Z][a-z]+)?)"
    r"|(?P<age>\b(?:9\d|1[01]\d)(?=[- ]years?[- ]old|[- ]year-old|\s*y/?o\b))"
    r"|(?P<phone>\(?\b\d{3}\)?[ .-]\d{3}[ .-]\d{4}\b)")


def prelabel(sentence: str, gen: Generator) -> list[Piece]:
    """The sentence as pieces, with identifiers it already holds replaced by labelled surrogates."""
    from meddata.filters.deid.dictionaries import lexicon

    lex = lexicon()
    v = gen.v
    pieces: list[Piece] = []
    pos = 0
    for m in _EXISTING.finditer(sentence):
        kind = m.lastgroup
        if kind == "tname" or kind == "title":
            pieces.append((sentence[pos:m.start("tname")], None))
            pieces.append((v.person() if gen.rng.random() < 0.5 else v.last_name(), "NAME"))
        elif kind == "placeholder" or kind == "synthea":
            pieces.append((sentence[pos:m.start()], None))
            pieces.append((v.first_name() if kind == "synthea" else v.person(), "NAME"))
        elif kind == "date":
            pieces.append((sentence[pos:m.start()], None))
            pieces.append((v.date(), "DATE"))
        elif kind in ("cue", "year"):
            pieces.append((sentence[pos:m.start("year")], None))
            pieces.append((str(gen.rng.randrange(1940, 2024)), "DATE"))
        elif kind in ("place", "city"):
            city = m.group("city")
            if city.lower() not in lex.big_cities or lex.is_word(city.split()[0]):
                continue
            pieces.append((sentence[pos:m.start("city")], None))
            pieces.append((v.city(), "LOCATION"))
        elif kind == "age":
            pieces.append((sentence[pos:m.start()], None))
            pieces.append((str(gen.rng.randrange(90, 106)), "AGE"))
        elif kind == "phone":
            pieces.append((sentence[pos:m.start()], None))
            pieces.append((v.phone(), "PHONE"))
        pos = m.end()
    pieces.append((sentence[pos:], None))
    return [p for p in pieces if p[0]]


# ---------------------------------------------------------------------------------------
# Sources
# ---------------------------------------------------------------------------------------
def load_sources(data: Path) -> dict[str, list[str]]:
    """Real clinical text (no PHI labels needed: identifiers in it are rewritten by prelabel)."""
    import csv

    seen: set[str] = set()
    mts = []
    with (data / "mtsamples" / "mtsamples.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            t = json.loads(line).get("transcription") or ""
            if t and t not in seen:
                seen.add(t)
                mts.append(t)
    notes, turns = [], []
    for name in ("MTS-Dialog-TrainingSet.csv", "MTS-Dialog-ValidationSet.csv"):
        with (data / "mts-dialog" / name).open(encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh):
                notes.append(row["section_text"])
                turns.append(row["dialogue"])
    synthea = []
    with (data / "synthea" / "synthea_notes.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            synthea.append(json.loads(line)["text"])
    return {"mtsamples": mts, "mts_dialog_notes": notes, "mts_dialog_turns": turns, "synthea": synthea}


def patient_of(doc_id: str) -> int:
    """PhysioNet gold ids are ``patient-note``."""
    return int(str(doc_id).split("-")[0])


def parse_range(s: str) -> set[int]:
    lo, _, hi = s.partition("-")
    return set(range(int(lo), int(hi or lo) + 1))


def read_dev(path: Path, patients: set[int]) -> list[dict]:
    """Rows of the PhysioNet development gold for ``patients`` only (never patient 21 and up)."""
    if max(patients, default=0) > 20:
        sys.exit("patients 21 and up are the blind test set: they may not be read")
    from meddata.filters.deid.evaluate import json_lines

    rows = []
    for _, row in json_lines(path):
        if patient_of(row["id"]) in patients:
            rows.append(row)
    return rows


_DIGITS_PHONE = re.compile(r"^\(?\d{3}\)?[\s.-]*\d{3}[\s.-]*\d{4}$|^\d{3}-\d{4}$|^\d-\d{4}$")
_DATEISH = re.compile(r"\d+/\d+|\d+-\d+|\d{4}|'\d\d|" + _MONTH_RE, re.I)


def type_of(span_text: str, after: str) -> str:
    """A type for an untyped gold span, from its shape (the PhysioNet gold marks PHI only)."""
    from meddata.filters.deid.dictionaries import lexicon

    lex = lexicon()
    t = span_text.strip()
    if re.match(r"^\s*(?:y|yo|y/o|yr|year)", after, re.I) and t.isdigit():
        return "AGE"
    if _DIGITS_PHONE.match(t):
        return "PHONE"
    if re.fullmatch(r"\d{5,}|[A-Z]*\d[\d-]{5,}", t):
        return "ID"
    if any(c.isdigit() for c in t) and _DATEISH.search(t) or re.fullmatch(_MONTH_RE + r"\.?", t, re.I):
        return "DATE"
    low = t.lower()
    if any(w in low.split() for w in ("hospital", "hosp", "medical", "center", "clinic", "rehab", "general",
                                       "memorial", "nursing", "house", "manor")) or low.startswith(("st ", "st.")):
        return "HOSPITAL"
    if low in lex.big_cities or low in lex.ambiguous_places:
        return "LOCATION"
    return "NAME"


def dev_pieces(row: dict, max_len: int = 900) -> list[list[Piece]]:
    """A development note as chunks of whole lines (about the length the model sees), typed."""
    text = row["text"]
    spans = sorted((s["start"], s["end"]) for s in row["spans"])
    chunks: list[list[Piece]] = []
    start = 0
    while start < len(text):
        end = min(len(text), start + max_len)
        if end < len(text):
            cut = text.rfind("\n", start, end)
            end = cut + 1 if cut > start else end
        # never cut inside a span
        for a, b in spans:
            if a < end < b:
                end = b
        pieces: list[Piece] = []
        pos = start
        for a, b in spans:
            if a >= start and b <= end:
                pieces.append((text[pos:a], None))
                pieces.append((text[a:b], type_of(text[a:b], text[b:b + 6])))
                pos = b
        pieces.append((text[pos:end], None))
        chunks.append([p for p in pieces if p[0]])
        start = end
    return chunks


# ---------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------
def model_config(width: int, depth: int, rows: int, hidden: int = 64) -> dict:
    """spaCy ner on its own small tok2vec: lower-cased form, prefix, suffix and shape, so the
    same word in ALL CAPS, lower case or Title case shares an embedding and case is a feature."""
    return {"model": {
        "@architectures": "spacy.TransitionBasedParser.v2", "state_type": "ner", "extra_state_tokens": False,
        "hidden_width": hidden, "maxout_pieces": 2, "use_upper": True, "nO": None,
        "tok2vec": {
            "@architectures": "spacy.Tok2Vec.v2",
            "embed": {"@architectures": "spacy.MultiHashEmbed.v2", "width": width,
                      "attrs": ["LOWER", "PREFIX", "SUFFIX", "SHAPE"],
                      "rows": [rows, rows // 4, rows // 2, rows // 8], "include_static_vectors": False},
            "encode": {"@architectures": "spacy.MaxoutWindowEncoder.v2", "width": width, "depth": depth,
                       "window_size": 1, "maxout_pieces": 3},
        }}}


def blank_nlp():
    """English tokenizer that also splits ``MRN#123``, ``pager:1234`` and ``x4-1234`` pieces."""
    import spacy
    from spacy.util import compile_infix_regex

    nlp = spacy.blank("en")
    infixes = list(nlp.Defaults.infixes) + [r"#", r"(?<=[A-Za-z]):(?=\d)", r"(?<=\d)-(?=\d)", r"(?<=[a-z])\.(?=[A-Z])"]
    nlp.tokenizer.infix_finditer = compile_infix_regex(infixes).finditer
    return nlp


def to_example(nlp, pieces: list[Piece]):
    from spacy.training import Example

    text = ""
    ents = []
    for t, label in pieces:
        if label is not None:
            lead = len(t) - len(t.lstrip())
            core = t.strip()
            if core:
                ents.append((len(text) + lead, len(text) + lead + len(core), label))
        text += t
    doc = nlp.make_doc(text)
    spans = []
    last_end = -1
    for a, b, label in ents:
        span = doc.char_span(a, b, label=label, alignment_mode="expand")
        if span is None or span.start < last_end:
            continue
        spans.append(span)
        last_end = span.end
    ref = doc.copy()
    ref.ents = spans
    return Example(nlp.make_doc(text), ref)


def score_model(model, rows: list[dict]) -> dict:
    from meddata.filters.deid.evaluate import evaluate

    preds = model.spans_many([r["text"] for r in rows])
    report = evaluate(rows, {r["id"]: [s.as_dict() for s in ss] for r, ss in zip(rows, preds)})
    d = report.as_dict()
    return {"documents": d["documents"], "gold_spans": d["gold_spans"], "predicted_spans": d["predicted_spans"],
            "lenient": {k: round(v, 4) for k, v in report.metrics("lenient").items()},
            "strict": {k: round(v, 4) for k, v in report.metrics("strict").items()},
            "recall_by_type": {t: round(v["recall"], 4) for t, v in d["lenient"]["by_type"].items()
                               if v["recall"] is not None},
            "precision_by_type": {t: round(v["precision"], 4) for t, v in d["lenient"]["by_type"].items()
                                  if v["precision"] is not None}}


def eval_sets(dev_valid: list[dict]) -> dict[str, list[dict]]:
    from meddata.filters.deid.evaluate import load_gold

    sets = {name: load_gold(ROOT / "tests" / "data" / "deid" / f, ages=ages) for name, (f, ages) in GOLD_SETS.items()}
    if dev_valid:
        sets["physionet_dev_valid"] = [{"id": r["id"], "text": r["text"], "spans": r["spans"]} for r in dev_valid]
    return sets


def save(nlp, optimizer, out: Path, width: int, depth: int, rows: int, hidden: int) -> None:
    """Write only what inference needs: a fresh pipeline (so the vocabulary holds no training
    strings) with the trained, averaged weights."""
    import shutil

    fresh = blank_nlp()
    fresh.add_pipe("ner", config=model_config(width, depth, rows, hidden))
    with nlp.use_params(optimizer.averages):
        weights = nlp.get_pipe("ner").to_bytes(exclude=["vocab"])
    ner = fresh.get_pipe("ner")
    for label in nlp.get_pipe("ner").labels:
        ner.add_label(label)
    fresh.initialize()
    ner.from_bytes(weights, exclude=["vocab"])
    if out.exists():
        for p in out.iterdir():
            if p.name not in ("CARD.md",):
                shutil.rmtree(p) if p.is_dir() else p.unlink()
    fresh.meta.update({"name": "meddata_phi", "version": VERSION,
                       "description": "meddata learned PHI tagger (see CARD.md)", "license": "Apache-2.0"})
    fresh.to_disk(out)


def train(args: argparse.Namespace) -> None:
    import os

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from meddata.filters.deid import learned
    from spacy.training import Example  # noqa: F401  (import early: fail fast without spaCy)
    from spacy.util import fix_random_seed, minibatch

    t0, c0 = time.time(), time.process_time()
    fix_random_seed(args.seed)
    rng = random.Random(args.seed)
    sources = load_sources(args.data)
    gen = Generator(rng, sources)
    nlp = blank_nlp()
    nlp.add_pipe("ner", config=model_config(args.width, args.depth, args.rows, args.hidden))
    pieces = [gen.example() for _ in range(args.examples)]
    dev_train, dev_valid = [], []
    if args.dev and args.dev.exists():
        dev_train = read_dev(args.dev, parse_range(args.dev_train)) if args.dev_train else []
        dev_valid = read_dev(args.dev, parse_range(args.dev_valid)) if args.dev_valid else []
        for row in dev_train:
            chunks = dev_pieces(row)
            pieces.extend(chunks)  # once as written
            for _ in range(args.dev_repeat - 1):  # then with fresh surrogates and case shapes
                pieces.extend(gen.reshape(c) for c in chunks)
    elif args.dev:
        print(f"development gold {args.dev} not found: training on synthetic data only")
    examples = [to_example(nlp, p) for p in pieces]
    labels = Counter(e.reference.ents[i].label_ for e in examples for i in range(len(e.reference.ents)))
    n_words = sum(len(e.reference) for e in examples)
    print(f"{len(examples):,} examples, {n_words:,} tokens, entities {dict(labels)}; "
          f"dev notes used for training: {len(dev_train)} ({time.time() - t0:.0f}s)")
    optimizer = nlp.initialize(lambda: examples[:2000])
    sets = eval_sets(dev_valid)
    for epoch in range(args.epochs):
        t_epoch = time.time()
        rng.shuffle(examples)
        losses: dict[str, float] = {}
        for batch in minibatch(examples, size=args.batch):
            nlp.update(batch, drop=args.dropout, sgd=optimizer, losses=losses)
        t_train = time.time() - t_epoch
        save(nlp, optimizer, args.out, args.width, args.depth, args.rows, args.hidden)
        learned.load.cache_clear()
        model = learned.load(args.out)
        watched = {n: score_model(model, rows) for n, rows in sets.items()
                   if n in ("clinical_gold", "physionet_dev_valid")}
        msg = " ".join(f"{n} R {s['lenient']['recall']:.3f} P {s['lenient']['precision']:.3f}"
                       for n, s in watched.items())
        print(f"epoch {epoch + 1}: loss {losses.get('ner', 0):.0f}  {msg}  (epoch {t_train:.0f}s, total {time.time() - t0:.0f}s)", flush=True)
    learned.load.cache_clear()
    model = learned.load(args.out)
    scores = {name: score_model(model, rows) for name, rows in sets.items()}
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    info = {
        "name": "meddata_phi", "version": VERSION, "labels": sorted(model.labels), "seed": args.seed,
        "architecture": {"tok2vec": "MultiHashEmbed(LOWER, PREFIX, SUFFIX, SHAPE) + MaxoutWindowEncoder",
                         "width": args.width, "depth": args.depth, "rows": args.rows, "ner_hidden": args.hidden},
        "training": {"examples": len(examples), "tokens": n_words, "entities": dict(labels),
                     "synthetic_examples": args.examples, "epochs": args.epochs,
                     "sources": sorted(sources), "source_documents": {k: len(v) for k, v in sources.items()},
                     "physionet_dev_notes_trained": len(dev_train), "physionet_dev_patients_trained":
                         args.dev_train if dev_train else None,
                     "physionet_dev_notes_validated": len(dev_valid), "physionet_dev_patients_validated":
                         args.dev_valid if dev_valid else None,
                     "seconds": round(time.time() - t0), "cpu_seconds": round(time.process_time() - c0)},
        "scores": scores, "size_bytes": size,
    }
    (args.out / "info.json").write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
    for name, s in scores.items():
        print(f"{name:<22} lenient R {s['lenient']['recall']:.3f} P {s['lenient']['precision']:.3f}  "
              f"by type R {s['recall_by_type']}")
    print(f"model {size / 1e6:.1f} MB -> {args.out} in {time.time() - t0:.0f}s ({time.process_time() - c0:.0f}s CPU)")


def main(argv: Iterable[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="shared/data folder (MTSamples, MTS-Dialog, Synthea)")
    ap.add_argument("--dev", type=Path, default=None, help="PhysioNet development gold JSONL (optional)")
    ap.add_argument("--dev-train", default="1-10", help="development patients to train on")
    ap.add_argument("--dev-valid", default="11-17", help="development patients to score")
    ap.add_argument("--dev-repeat", type=int, default=6,
                    help="times each training note is seen per epoch (after the first with other surrogates)")
    ap.add_argument("--out", type=Path, default=ROOT / "filters" / "deid" / "model")
    ap.add_argument("--examples", type=int, default=14000, help="synthetic examples")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--dropout", type=float, default=0.2)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--rows", type=int, default=5000)
    ap.add_argument("--hidden", type=int, default=48)
    ap.add_argument("--show", type=int, default=0, help="print N generated examples and exit")
    ap.add_argument("--speed", type=int, default=0, metavar="CHARS",
                    help="only measure the shipped model's speed on about CHARS characters of MTSamples notes")
    args = ap.parse_args(list(argv) if argv is not None else None)
    if args.show:
        gen = Generator(random.Random(args.seed), load_sources(args.data))
        for _ in range(args.show):
            print("".join(f"[{t}]{{{lab}}}" if lab else t for t, lab in gen.example()))
            print("-" * 40)
        return
    if args.speed:
        measure_speed(args.out, args.data, args.speed)
        return
    train(args)


def measure_speed(model_dir: Path, data: Path, chars: int) -> None:
    """Load time and characters per second of the model on real notes, in one process on one
    core. CPU seconds are printed beside wall seconds: on a shared machine only they compare."""
    w0, c0 = time.time(), time.process_time()
    from meddata.filters.deid import learned

    model = learned.load(model_dir)
    w_load, c_load = time.time() - w0, time.process_time() - c0
    notes: list[str] = []
    total = 0
    for text in load_sources(data)["mtsamples"]:
        notes.append(text)
        total += len(text)
        if total >= chars:
            break
    model.spans_many(notes[:5])  # warm up
    w1, c1 = time.time(), time.process_time()
    n_spans = sum(len(s) for s in model.spans_many(notes))
    wall, cpu = time.time() - w1, time.process_time() - c1
    print(f"load {w_load:.2f}s wall, {c_load:.2f}s CPU; {len(notes):,} notes, {total:,} chars: "
          f"{total / wall:,.0f} chars/s wall, {total / cpu:,.0f} chars/s CPU; {n_spans:,} spans")


if __name__ == "__main__":
    main()
