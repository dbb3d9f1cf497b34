"""Generate the clinical-note gold set ``clinical_gold.jsonl`` (run by hand; output is committed).

    python tests/data/deid/make_notes.py

Notes come from templates filled with surrogate values, plus hand-written notes in
``handwritten_notes.txt``. Both use inline markup ``[[TYPE|text]]`` for PHI, converted here
to exact character offsets, so gold spans cannot drift from the text. Case transforms
(ALL CAPS, lower case) are applied after filling; values are ASCII so offsets survive.

The value pools are written here on purpose and are NOT taken from meddata's own
dictionaries: names include rare and foreign surnames, towns include small places, and
hospitals are invented, so the gold set measures generalisation, not dictionary lookup.
"""

from __future__ import annotations

import json
import random
import re
from datetime import date, timedelta
from pathlib import Path

HERE = Path(__file__).parent
MARK = re.compile(r"\[\[([A-Z]+)\|(.*?)\]\]", re.S)

FIRST = ("Maria James Aaliyah Tobias Hannelore Oluwaseun Siobhan Dmitri Priya Xavier Ulysses Quinn Beatrix Wendell "
         "Marisol Thaddeus Ingrid Rafael Yolanda Cornelius Esperanza Gideon Lucinda Bartholomew Keisha Anil Mei "
         "Svetlana Ezekiel Rosalind Desmond Harriet Lorenzo Imogen Jerome Fatima Clement Agnes Mateo Bronwyn").split()
LAST = ("Kowalczyk Okafor Brennan Lindqvist Delacroix Nakamura Abernathy Zabriskie Villanueva Thibodeaux Haverford "
        "Ostrowski Pemberton McAllister Quintero Rasmussen Adeyemi Fairweather Castellano Whitlock Oyelaran Dunleavy "
        "Szymanski Hargrove Balasubramanian Featherstone Iverson Kaufman O'Donnell Petrakis Montgomery Tran Goldberg "
        "Sorensen Blackwood Esposito Nguyen Ferreira Halloran Winterbottom").split()
COMMON_LAST = "Smith Johnson Brown Miller Davis Wilson Moore Taylor White Harris Clark Lewis Young King".split()
TOWNS = ("Framingham|Worcester|Brockton|Marlborough|Fitchburg|Taunton|Chicopee|Leominster|Attleboro|Billerica|"
         "Pittsfield|Haverhill|Northampton|Gardner|Amesbury|Peabody|Revere|Methuen|Natick|Dedham|Springfield|"
         "Cedar Rapids|Eau Claire|Kalamazoo|Bismarck|Poughkeepsie|Chattanooga|Tuscaloosa|Walla Walla|Ypsilanti|"
         "Oshkosh|Bozeman|Muncie|Paducah|Yakima|Saginaw|Council Bluffs|Lake Charles|Grand Junction").split("|")
STATES = "MA NH RI CT NY VT ME PA OH MI IA WI WA ND TN AL".split()
HOSPITALS = ("Pinecrest Regional Medical Center|St. Agnes Hospital|Riverside Clinic|Mercy Hospital|"
             "Holloway Memorial Hospital|Brookfield Rehabilitation Center|St. Brigid's|Mt. Auburn Hospital|"
             "Lakeside Nursing Home|Whitfield Family Practice|Saint Casimir Medical Center|"
             "Cranberry Valley Health Center|Oakmont Hospice|Fairhaven General Hospital|"
             "Northshore Children's Hospital|Granite State Cancer Center").split("|")
STREETS = "Maple Street|Elm Ave|Old County Road|Birchwood Lane|Harbor View Drive|Quarry Rd|Winthrop Place".split("|")
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]


def date_shapes(d: date, rng: random.Random) -> str:
    m, dd, y = d.month, d.day, d.year
    mon = MONTHS[m - 1]
    suffix = "th" if 11 <= dd <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(dd % 10, "th")
    shapes = [
        f"{m}/{dd}", f"{m:02d}/{dd:02d}/{y}", f"{m}/{dd}/{y % 100:02d}", f"{dd}-{mon[:3]}", f"{mon} {dd}{suffix}",
        f"{mon} {dd}, {y}", f"{mon[:3]} {dd}", f"{y}-{m:02d}-{dd:02d}", f"{dd} {mon} {y}", f"{m}-{dd}-{y}",
        f"{mon[:3]}. {dd}, {y}", f"{dd}-{mon[:3]}-{y % 100:02d}", f"{m}/{dd}/{y}",
    ]
    return rng.choice(shapes)


def phone_shapes(rng: random.Random) -> str:
    a, b, c = rng.randint(201, 989), rng.randint(201, 989), rng.randint(1000, 9999)
    return rng.choice([f"({a}) {b}-{c}", f"{a}-{b}-{c}", f"{a}.{b}.{c}", f"{a} {b} {c}", f"({a}){b}-{c}",
                       f"{a}-{b}-{c} x{rng.randint(100, 9999)}", f"+1 {a} {b} {c}"])


class Values:
    """One patient's surrogate values."""

    def __init__(self, rng: random.Random):
        pool_last = LAST + COMMON_LAST
        self.pf, self.pl = rng.choice(FIRST), rng.choice(pool_last)
        self.rel_first = rng.choice([f for f in FIRST if f != self.pf])
        self.rel_last = rng.choice(pool_last)
        self.doc_first, self.doc_last = rng.choice(FIRST), rng.choice(LAST)
        self.doc2_last = rng.choice(LAST)
        self.doc2_first = rng.choice(FIRST)
        self.nurse = rng.choice(FIRST)
        self.town, self.town2 = rng.sample(TOWNS, 2)
        self.state = rng.choice(STATES)
        self.hosp, self.hosp2 = rng.sample(HOSPITALS, 2)
        self.street = f"{rng.randint(2, 9999)} {rng.choice(STREETS)}"
        self.zip = f"{rng.randint(1000, 99999):05d}"
        base = date(rng.randint(2004, 2023), rng.randint(1, 12), rng.randint(1, 28))
        self.dates = [date_shapes(base + timedelta(days=k * rng.randint(1, 9)), rng) for k in range(6)]
        self.dob = date_shapes(date(rng.randint(1925, 1990), rng.randint(1, 12), rng.randint(1, 28)), rng)
        self.phone, self.phone2 = phone_shapes(rng), phone_shapes(rng)
        self.mrn = rng.choice([f"{rng.randint(1000000, 99999999)}", f"{rng.randint(100, 999)}-{rng.randint(10, 99)}-"
                               f"{rng.randint(1000, 9999)}", f"MR{rng.randint(100000, 999999)}"])
        self.age = str(rng.choice([rng.randint(19, 88), rng.randint(90, 104)]))
        self.old_age = str(rng.randint(90, 103))
        self.weekday = rng.choice(["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"])
        self.year = str(rng.randint(1990, 2022))
        self.yy = self.year[2:]
        self.initials = (self.doc_first[0] + self.doc_last[0]).upper()
        self.email = f"{self.pf.lower()}.{self.pl.lower().replace(chr(39), '')}{rng.randint(1, 99)}@mailbox.com"
        self.ssn = f"{rng.randint(100, 665)}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}"
        self.policy = f"{rng.choice(['BCX', 'HPA', 'MCD'])}{rng.randint(10000000, 99999999)}"


TEMPLATES = [
    # discharge summary
    """DISCHARGE SUMMARY
Patient: [[NAME|{v.pf} {v.pl}]]   MRN: [[MRN|{v.mrn}]]   DOB: [[DATE|{v.dob}]]
Admission Date: [[DATE|{v.dates[0]}]]   Discharge Date: [[DATE|{v.dates[2]}]]
Attending: [[NAME|{v.doc_first} {v.doc_last}]], MD

HISTORY OF PRESENT ILLNESS: [[NAME|{v.pf}]] is a [[AGE|{v.age}]]-year-old woman from [[LOCATION|{v.town}]] who presented to \
[[HOSPITAL|{v.hosp}]] on [[DATE|{v.dates[0]}]] with chest pain. She was transferred from [[HOSPITAL|{v.hosp2}]] for \
catheterization. Her husband [[NAME|{v.rel_first}]] reports she had a similar episode in [[DATE|{v.year}]].

HOSPITAL COURSE: Cardiology (Dr. [[NAME|{v.doc2_last}]]) was consulted. Echo on [[DATE|{v.dates[1]}]] showed EF 45%. \
Foley catheter removed on hospital day 2. Motor strength 5/5 throughout. Parkinson's disease is stable on carbidopa.

DISPOSITION: Home with services. Follow up with Dr. [[NAME|{v.doc_last}]] on [[DATE|{v.dates[4]}]]. Call \
[[PHONE|{v.phone}]] with questions.

Dictated by: [[NAME|{v.doc_first} {v.doc_last}]], MD
[[NAME|{v.initials}]]/[[NAME|mk]]  D: [[DATE|{v.dates[2]}]]""",
    # nursing note (rendered ALL CAPS by some seeds)
    """NURSING NOTE [[DATE|{v.dates[1]}]] 0700-1900
PT [[NAME|{v.pl}]] SEEN BY DR [[NAME|{v.doc_last}]] IN ED. WIFE [[NAME|{v.rel_first}]] AT BEDSIDE, VERY SUPPORTIVE. \
VSS, AFEBRILE. LUNGS CTA BILAT. AMBULATED IN HALL WITH PT. TOLERATING REGULAR DIET. F/U [[DATE|{v.dates[3]}]] AT \
[[HOSPITAL|{v.hosp}]]. DAUGHTER [[NAME|{v.rel_first} {v.rel_last}]] TO CALL [[PHONE|{v.phone2}]]. \
PLAN D/C HOME [[DATE|{v.weekday}]]. -- [[NAME|{v.nurse}]] RN""",
    # referral letter
    """[[HOSPITAL|{v.hosp}]]
[[LOCATION|{v.street}]], [[LOCATION|{v.town}, {v.state} {v.zip}]]
Tel [[PHONE|{v.phone}]]  Fax [[PHONE|{v.phone2}]]

[[DATE|{v.dates[0]}]]

Dear Dr. [[NAME|{v.doc2_last}]],

Thank you for seeing [[NAME|{v.pf} {v.pl}]] (DOB [[DATE|{v.dob}]]), a pleasant [[AGE|{v.age}]] year old gentleman whom I \
have followed since [[DATE|{v.year}]] for type 2 diabetes and CKD stage 3. He lives in [[LOCATION|{v.town2}]] with \
his daughter [[NAME|{v.rel_first}]]. His last A1c on [[DATE|{v.dates[1]}]] was 8.2%. He is accompanied by his son \
[[NAME|{v.rel_first} {v.pl}]], who can be reached at [[PHONE|{v.phone2}]] or [[EMAIL|{v.email}]].

I would appreciate your assessment of his proteinuria. Please send your note to my office.

Sincerely,
[[NAME|{v.doc_first} {v.doc_last}]], MD
Internal Medicine""",
    # progress note, lower-case texting style
    """pt [[NAME|{v.pf} {v.pl}]] seen today [[DATE|{v.dates[2]}]] for f/u. wife [[NAME|{v.rel_first}]] present. \
c/o mild sob on exertion, no cp. lives in [[LOCATION|{v.town}]], still driving. bp 132/84, hr 76. plan: \
cont lisinopril, labs next wk, rtc [[DATE|{v.dates[4]}]]. d/w dr [[NAME|{v.doc_last}]]. \
pcp is dr [[NAME|{v.doc2_first} {v.doc2_last}]] at [[HOSPITAL|{v.hosp}]].""",
    # ED note with ages over 89
    """EMERGENCY DEPARTMENT NOTE
Name: [[NAME|{v.pl}, {v.pf}]]   Acct #: [[ID|{v.policy}]]   Seen: [[DATE|{v.dates[0]}]] 14:32
CC: fall at home.
HPI: [[AGE|{v.old_age}]] yo F brought in by EMS from [[HOSPITAL|{v.hosp2}]] after an unwitnessed fall. Her niece \
[[NAME|{v.rel_first} {v.rel_last}]] ([[PHONE|{v.phone}]]) says she was at baseline on [[DATE|{v.weekday}]]. \
Prior hip fracture in [[DATE|'{v.yy}]]. Pain 6/10. Allen test normal.
Exam: GCS 15. 2/6 systolic murmur. Strength 4/5 RLE.
Imaging: CT head negative. Discussed with Dr. [[NAME|{v.doc_first} {v.doc_last}]] (ortho).
Dispo: admit to medicine, [[HOSPITAL|{v.hosp}]].
SSN on file: [[SSN|{v.ssn}]]""",
    # operative note
    """OPERATIVE REPORT
DATE OF PROCEDURE: [[DATE|{v.dates[1]}]]
SURGEON: [[NAME|{v.doc_first} {v.doc_last}]], MD
ASSISTANT: [[NAME|{v.doc2_first} {v.doc2_last}]], PA-C
PROCEDURE: Laparoscopic cholecystectomy.
The patient was brought to the operating room and placed supine. A Veress needle was inserted and pneumoperitoneum \
established. The gallbladder was grasped with a Kelly clamp and retracted. The cystic duct was doubly clipped. A \
Jackson-Pratt drain was placed. Sponge and needle counts were correct. The patient tolerated the procedure well and \
was taken to recovery. Her brother [[NAME|{v.rel_first}]] was updated by phone after the case. Return visit with \
Dr. [[NAME|{v.doc_last}]] at [[HOSPITAL|{v.hosp}]] in two weeks ([[DATE|{v.dates[5]}]]).""",
    # social work / psych
    """Social Work Note - [[DATE|{v.dates[3]}]]
Met with patient and her partner, [[NAME|{v.rel_first} {v.rel_last}]], at bedside. Patient grew up in \
[[LOCATION|{v.town2}]] and moved to [[LOCATION|{v.town}]] in [[DATE|{v.year}]]. She works as a school bus driver. \
Health care proxy: [[NAME|{v.rel_first} {v.rel_last}]], phone [[PHONE|{v.phone}]]. Patient's sister \
[[NAME|{v.doc2_first}]] lives nearby. Referred to [[HOSPITAL|{v.hosp2}]] for outpatient counseling starting \
[[DATE|{v.dates[5]}]]. Insurance ID [[ID|{v.policy}]].
[[NAME|{v.nurse} {v.doc2_last}]], LICSW""",
    # telephone encounter
    """Telephone encounter [[DATE|{v.dates[0]}]] 10:15am
Spoke with [[NAME|{v.pf}]]'s daughter, [[NAME|{v.rel_first}]], at [[PHONE|{v.phone}]]. Patient ran out of metoprolol \
on [[DATE|{v.dates[1]}]]. Refill sent to pharmacy. Advised to call back if HR > 110. Will route to Dr. \
[[NAME|{v.doc_last}]]. Pt's MRN [[MRN|{v.mrn}]]. Next appt [[DATE|{v.dates[3]}]] with [[NAME|{v.doc2_first} \
{v.doc2_last}]], NP.""",
    # consult with a list of meds and eponyms (tests precision)
    """CARDIOLOGY CONSULT
Requesting physician: Dr. [[NAME|{v.doc2_last}]]
Reason: new atrial fibrillation.
HPI: Mr. [[NAME|{v.pl}]] is a [[AGE|{v.age}]]-year-old man with hypertension, Graves disease s/p RAI, and Crohn's \
disease, admitted [[DATE|{v.dates[0]}]] with palpitations. Holter in [[DATE|{v.year}]] showed PACs. Swan-Ganz \
catheter was not placed. Meds: Coumadin 5 mg, Lasix 40 mg daily, Toprol XL 50 mg, Synthroid 100 mcg.
Family history: father died of MI at [[AGE|62]]. Mother alive at [[AGE|{v.old_age}]] in [[LOCATION|{v.town}]].
Social: lives with wife [[NAME|{v.rel_first}]]; retired machinist from [[LOCATION|{v.town2}]].
Exam: BP 142/88, irregularly irregular. Homans sign negative. Murphy's sign negative.
Plan: rate control, TTE, discuss anticoagulation. Seen and examined with Dr. [[NAME|{v.doc_first} {v.doc_last}]].""",
    # clinic note with signature and initials
    """Clinic visit [[DATE|{v.dates[2]}]]
S: [[NAME|{v.pf}]] returns for follow-up of COPD. Using albuterol twice weekly. Went to visit family in \
[[LOCATION|{v.town2}]] over [[DATE|Thanksgiving]] without exacerbation.
O: SpO2 94% RA. Scattered wheezes.
A/P: COPD, stable. Continue Spiriva. Pulmonary rehab at [[HOSPITAL|{v.hosp}]]. RTC 3 months.
cc: [[NAME|{v.doc2_first} {v.doc2_last}]], MD, [[LOCATION|{v.town}]]
Electronically signed by [[NAME|{v.doc_first} {v.doc_last}]] on [[DATE|{v.dates[2]}]]""",
    # transfer summary with address and IDs
    """INTERFACILITY TRANSFER
From: [[HOSPITAL|{v.hosp2}]]   To: [[HOSPITAL|{v.hosp}]]
Patient [[NAME|{v.pf} {v.pl}]], [[AGE|{v.age}]] y/o, home address [[LOCATION|{v.street}]], \
[[LOCATION|{v.town}, {v.state}]]. Emergency contact: [[NAME|{v.rel_first} {v.rel_last}]] (brother) \
[[PHONE|{v.phone2}]]. Medicare ID [[ID|{v.policy}]]. Code status: full code.
Accepting physician: [[NAME|{v.doc_first} {v.doc_last}]]. Report called to [[NAME|{v.nurse}]], RN at \
[[PHONE|{v.phone}]] on [[DATE|{v.dates[4]}]].""",
    # pediatric note
    """PEDIATRIC WELL VISIT [[DATE|{v.dates[0]}]]
[[NAME|{v.pf}]] is a [[AGE|4]]-year-old here with mom, [[NAME|{v.rel_first} {v.pl}]], and grandmother. Born at \
[[HOSPITAL|{v.hosp}]] on [[DATE|{v.dob}]] at 39 weeks. Attends preschool in [[LOCATION|{v.town}]]. Immunizations \
up to date per state registry. Growth: 50th percentile for height. Apgar scores were 8 and 9. Next visit at age [[AGE|5]]. \
Seen with [[NAME|{v.doc2_first} {v.doc2_last}]], pediatric resident. Dr. [[NAME|{v.doc_last}]] attending.""",
]


def render(markup: str) -> tuple[str, list[dict]]:
    text, spans, pos = [], [], 0
    out_len = 0
    for m in MARK.finditer(markup):
        chunk = markup[pos:m.start()]
        text.append(chunk)
        out_len += len(chunk)
        value = m.group(2)
        spans.append({"start": out_len, "end": out_len + len(value), "type": m.group(1)})
        text.append(value)
        out_len += len(value)
        pos = m.end()
    text.append(markup[pos:])
    return "".join(text), spans


def synthea_notes(shared: Path, n: int = 40) -> None:
    """Synthea notes with each patient's known PHI written into a header (digits that Synthea
    appends to names are dropped), for the audit test: ``synthea_notes_phi.jsonl`` rows
    ``{patient_id, doc_id, text, phi: [values to search for]}``."""
    patients = {}
    for line in (shared / "synthea_patients_phi.jsonl").open():
        p = json.loads(line)
        patients[p["patient_id"]] = p
    rows, per_patient = [], {}
    for line in (shared / "synthea_notes.jsonl").open():
        note = json.loads(line)
        p = patients.get(note["patient_id"])
        if p is None or per_patient.get(p["patient_id"], 0) >= 2:
            continue
        per_patient[p["patient_id"]] = per_patient.get(p["patient_id"], 0) + 1
        given = re.sub(r"\d+", "", p["given"][0])
        family = re.sub(r"\d+", "", p["family"])
        addr = p["address"]
        header = (f"Patient: {given} {family}   DOB: {p['birthDate']}   MRN: {p['identifiers']['MR']}\n"
                  f"SSN: {p['identifiers']['SS']}   Phone: {p['telecom'][0]}\n"
                  f"Address: {addr['line'][0]}, {addr['city']}, {addr['state']} {addr['postalCode']}\n")
        body = note["text"].replace(p["given"][0], given).replace(p["family"], family)
        text = header + body.strip() + f"\nSeen by {given} {family}'s PCP; call {p['telecom'][0]} to reschedule."
        phi = [given, family, p["birthDate"], p["identifiers"]["MR"], p["identifiers"]["SS"], p["telecom"][0],
               addr["line"][0], addr["city"], addr["postalCode"]]
        rows.append({"patient_id": p["patient_id"], "doc_id": note["doc_id"], "text": text,
                     "phi": [v for v in phi if v]})
        if len(rows) >= n:
            break
    with (HERE / "synthea_notes_phi.jsonl").open("w") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
    print(f"{len(rows)} synthea notes with known PHI")


def main() -> None:
    rng = random.Random(20240722)
    rows = []
    n = 0
    for rep in range(4):
        for t_i, tpl in enumerate(TEMPLATES):
            v = Values(rng)
            markup = tpl.format(v=v)
            text, spans = render(markup)
            case = "mixed"
            if t_i == 1 or (rep == 3 and t_i in (4, 7)):
                case = "caps"
            elif t_i == 3 or (rep == 2 and t_i in (7, 10)):
                case = "lower"
            if case == "caps":
                text = text.upper()
            elif case == "lower":
                text = text.lower()
            n += 1
            rows.append({"id": f"gen-{n:03d}", "text": text, "spans": spans, "case": case})
    hand = (HERE / "handwritten_notes.txt").read_text().split("\n=====\n")
    for i, note in enumerate(h.strip() for h in hand if h.strip()):
        text, spans = render(note)
        rows.append({"id": f"hand-{i + 1:03d}", "text": text, "spans": spans, "case": "hand"})
    for r in rows:
        for s in r["spans"]:
            assert r["text"][s["start"]:s["end"]].strip(), r["id"]
    with (HERE / "clinical_gold.jsonl").open("w") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
    print(f"{len(rows)} notes, {sum(len(r['spans']) for r in rows)} PHI spans")


if __name__ == "__main__":
    import sys

    main()
    if len(sys.argv) > 1:  # path to shared/data/synthea
        synthea_notes(Path(sys.argv[1]))
