"""De-identification: rules, surrogates, replacement and scoring (fast, rules-only)."""

from __future__ import annotations

import re
import warnings
from datetime import timedelta

import pytest
from meddata.filters.deid.detector import Detector, DetectorConfig, config_for
from meddata.filters.deid.evaluate import evaluate, map_gold_type
from meddata.filters.deid.ner import RulesOnlyWarning
from meddata.filters.deid.replace import replace_spans
from meddata.filters.deid.spans import Span, merge_spans
from meddata.filters.deid.surrogate import Surrogates, shift_date


@pytest.fixture(scope="module")
def det() -> Detector:
    return Detector(DetectorConfig(model="off", learned="off"))


def found(det: Detector, text: str) -> dict[str, str]:
    return {text[s.start:s.end]: s.type for s in det.detect(text)}


def covered(det: Detector, text: str, value: str) -> bool:
    i = text.index(value)
    return any(s.start < i + len(value) and i < s.end for s in det.detect(text))


@pytest.mark.parametrize("text, value", [
    ("PT SEEN BY DR JONES IN ED. WIFE MARY AT BEDSIDE. F/U 7/22 AT MERCY HOSP.", "JONES"),
    ("PT SEEN BY DR JONES IN ED. WIFE MARY AT BEDSIDE. F/U 7/22 AT MERCY HOSP.", "MARY"),
    ("PT SEEN BY DR JONES IN ED. WIFE MARY AT BEDSIDE. F/U 7/22 AT MERCY HOSP.", "MERCY HOSP"),
    ("PT SEEN BY DR JONES IN ED. WIFE MARY AT BEDSIDE. F/U 7/22 AT MERCY HOSP.", "7/22"),
    ("pt seen by dr haldorsen today, wife akiko at bedside. lives in framingham.", "haldorsen"),
    ("pt seen by dr haldorsen today, wife akiko at bedside. lives in framingham.", "akiko"),
    ("pt seen by dr haldorsen today, wife akiko at bedside. lives in framingham.", "framingham"),
    ("Pt. name: Odalys Fenwick, seen at St. Mary's on July 22nd.", "Odalys Fenwick"),
    ("Pt. name: Odalys Fenwick, seen at St. Mary's on July 22nd.", "St. Mary's"),
    ("Pt. name: Odalys Fenwick, seen at St. Mary's on July 22nd.", "July 22nd"),
    ("Follow up arranged.\n-- J. Okonkwo, MD", "J. Okonkwo"),
    ("Her daughter Celestine will call.", "Celestine"),
    ("Mr. Prud'homme was transferred from Holloway Memorial Hospital.", "Prud'homme"),
    ("Mr. Prud'homme was transferred from Holloway Memorial Hospital.", "Holloway Memorial Hospital"),
    ("Call (617) 555-1234 or 617.555.1234, pager x4321.", "(617) 555-1234"),
    ("Call (617) 555-1234 or 617.555.1234, pager x4321.", "617.555.1234"),
    ("Call (617) 555-1234 or 617.555.1234, pager x4321.", "x4321"),
    ("MRN: 1234567, acct #12345678, SSN 123-45-6789.", "1234567"),
    ("MRN: 1234567, acct #12345678, SSN 123-45-6789.", "#12345678"),
    ("MRN: 1234567, acct #12345678, SSN 123-45-6789.", "123-45-6789"),
    ("Seen 2/3/04, again 22-Jul and on Tuesday; prior fracture in '92.", "2/3/04"),
    ("Seen 2/3/04, again 22-Jul and on Tuesday; prior fracture in '92.", "22-Jul"),
    ("Seen 2/3/04, again 22-Jul and on Tuesday; prior fracture in '92.", "Tuesday"),
    ("Seen 2/3/04, again 22-Jul and on Tuesday; prior fracture in '92.", "'92"),
    ("A 94 y/o woman from Springfield, MA 01103, email jo.doe@mail.com, http://x.example.org/p", "94"),
    ("A 94 y/o woman from Springfield, MA 01103, email jo.doe@mail.com, http://x.example.org/p", "01103"),
    ("A 94 y/o woman from Springfield, MA 01103, email jo.doe@mail.com, http://x.example.org/p", "jo.doe@mail.com"),
    ("Address: 45 Maple Street, Apt 3. VIN 1HGCM82633A004352, host 10.14.22.178.", "45 Maple Street"),
    ("Address: 45 Maple Street, Apt 3. VIN 1HGCM82633A004352, host 10.14.22.178.", "1HGCM82633A004352"),
    ("Address: 45 Maple Street, Apt 3. VIN 1HGCM82633A004352, host 10.14.22.178.", "10.14.22.178"),
    ("Dictated by: Harold Pennington\nHP/mk", "mk"),
    # nursing-note shapes: hospital acronyms, lower-case titles, caps surnames, slashed phones
    ("REFERRED TO GH. ARRIVED IN TRANSFER APPROX. 2130", "GH"),
    ("pt is a 57yo f who is followed at gh by dr healey.", "gh"),
    ("PT TRANSFERRED TO VAMC ICU FOR CATH.", "VAMC"),
    ("some mild stridor noted, dr green aware. Spo2 97% RR 16", "green"),
    ("team decided to attempt again later.  mrs. Burns remains sedated. Vent 40%", "Burns"),
    ("SOCIAL: SISTER IN TO VISIT, MET W/ CASEWORKER LEONA LABOWICH.", "LABOWICH"),
    ("his wife, Carol Buckley (201/324/1423) confirms the story.", "201/324/1423"),
    ("PRESENT HX:8/30 DECREASED MENTAL STATUS", "8/30"),
    ("PMH: CAD, CABG '92, all grafts occluded. echo 8/87 showing EF 20-25%.", "8/87"),
    ("he had TURP at reisterstown hospital at that time.", "reisterstown"),
    ("PT WAS TRANSFERED TO THE ZAGARIA CAMPUS FOR GI STUDIES", "ZAGARIA"),
    ("NOK: Fred155 Koss676 (son), lives nearby.", "Fred155 Koss676"),
    ("stable. transfer to quartermain 2. increase activity as tolerated", "quartermain 2"),
    ("Wire the refund from GB27DAKD58401036741857 today.", "GB27DAKD58401036741857"),
    ("46 year old male came into GH on 7/18 with chest pain", "GH"),
    ("Dr. griffin made aware, and pt. started on levophed", "griffin"),
    ("VENTOLIN MDI Q4.\n ROBERT V. DEGIORGIO, RRT\n", "DEGIORGIO"),
    ("WILL F/U IN NEXT 1-2 DAYS AS APPROP.\nPG 33445\n", "33445"),
    ("F/U AT LAKESIDE. DAUGHTER ANIL FAIRWEATHER TO CALL.", "ANIL"),
    ("TRANSFERED BACK TO QUARTERMAIN 3 POST PROCEDURE. QUARTERMAIN3 CALLED FOR BED.", "QUARTERMAIN3"),
    ("Pt slated to go to rehab(sacred heart Memorial) today.", "sacred heart"),
    ("FAMILY ASKED ABOUT A CONSULT FROM THE GBMC. HO AWARE.", "GBMC"),
    ("CT GUIDED TAP...DICK CUCCHIARA (RESIDENT) WORKING ON THIS.", "CUCCHIARA"),
    ("PMH: HTN, prostate CA'88, GERD.", "88"),
    ("Wife Mary 555-1234 is aware of the plan.", "555-1234"),
    ("Personal Info:\nPhone:\n467 3395\n\nE-mail: none", "467 3395"),
    ("Stephan M Urner\n\n4844 Sondergade 52\n Apt. 656\n Bronderslev\n\n Denmark 35018", "4844 Sondergade 52"),
    ("Stephan M Urner\n\n4844 Sondergade 52\n Apt. 656\n Bronderslev\n\n Denmark 35018", "Bronderslev"),
])
def test_finds_phi_shapes(det, text, value):
    assert covered(det, text, value), value


@pytest.mark.parametrize("text", [
    "Parkinson's disease and Crohn's disease are stable. Foley catheter removed.",
    "Motor strength 5/5 throughout. BP 120/80. Pain 8/10. 2/6 systolic murmur.",
    "The gallbladder was grasped with a Kelly clamp. A Jackson-Pratt drain was placed.",
    "PAST MEDICAL HISTORY: Hypertension. Brown stool noted. Will call back.",
    "PT RESTING COMFORTABLY. FOLEY DRAINING CLEAR YELLOW URINE. SATS 95%.",
    "Homans sign negative. Murphy's sign negative. Babinski negative.",
    # nursing notes: ranges, fractions and ventilator settings are not dates; shorthand is not names
    "resp: rr 12-18, rales 1/3 up bilat. ivf 1/2ns at 75/hr. PSV 10/5. lasix gtt 3-4mg/hr. bedpan x 3-4.",
    "GU: 3 WAY FOLEY IN PLACE & DRAINING. O2 SATS 92-95%. CO/CI 6.9/3.22, BUN/CR 49/2.0. PT/PTT 12.9/21.9",
    "neuro: a&ox3, mae. bp via r rad aline. dopa weaned this eve. GIVEN MOM X1. hr 70 sr w/occ pvc.",
    "Seen by Cardic Transplant surgeon. pt to be seen by tranplant team in am. visited by husband today.",
    "MS: alert, cooperative. MS- sedated on propofol. given 1 percocet w/improvment in pain.",
    "UOP 140-1500 cc overnight, plt 250-1000k. Increased to Lasix 40 mg. Transfer to floor 6 when stable.",
    "Pt intubated on CPAP .5% 5/8; changed to PSV of 10/5, 60%. settings 20/10/40%. LASIX 40MG @ 2000.",
    "ETHICS WAS CALLED AND MAY BE UP THIS EVENING. pcw 12-18, STAGE 2-3 ULCER. imv w/rate 10-600-50%.",
])
def test_medical_terms_are_not_phi(det, text):
    assert det.detect(text) == [], found(det, text)


def test_offsets_point_into_the_text(det):
    text = "Seen by Dr. Ana Lopez on 3/4/2021 at Riverside Clinic, (508) 555-0100."
    spans = det.detect(text)
    assert spans == merge_spans(spans)
    for s in spans:
        assert 0 <= s.start < s.end <= len(text)
        assert text[s.start:s.end] == text[s.start:s.end].strip()


def test_name_found_once_is_flagged_everywhere(det):
    text = "Mrs. Abernathy was admitted. Later Abernathy ambulated. ABERNATHY DENIES PAIN."
    assert sum(text[s.start:s.end].lower() == "abernathy" for s in det.detect(text)) == 3
    # apostrophes in names propagate too; contractions ("con't") never become names
    text = "Mr. O'Brien was seen. Later O'Brien reported pain. mrs. Burns con't to be sedated. con't on amio."
    spans = [text[s.start:s.end] for s in det.detect(text)]
    assert spans.count("O'Brien") == 2 and "con't" not in " ".join(spans)


def test_policies_differ_on_ages_weekdays_and_states():
    text = "A 45-year-old from Ohio, diagnosed in 2012, seen on Tuesday; her mother is 97. Hx MI '92."
    recall = {text[s.start:s.end] for s in Detector(config_for("recall", model="off")).detect(text)}
    safe = {text[s.start:s.end] for s in Detector(config_for("safe_harbor", model="off")).detect(text)}
    default = {text[s.start:s.end] for s in Detector(config_for(model="off")).detect(text)}
    assert {"45", "Ohio", "2012", "Tuesday", "97", "'92"} <= recall
    # Safe Harbor: dates and years (a year can reveal an age over 89) and ages over 89 go;
    # ages up to 89, weekdays and states are clinically needed and stay
    assert {"97", "2012", "'92"} <= safe and not {"45", "Ohio", "Tuesday"} & safe
    assert default == safe


def test_rules_only_mode_warns_once():
    with pytest.warns(RulesOnlyWarning, match=r"pip install \"meddata\[deid\]\""):
        d = Detector(DetectorConfig(model_name="no_such_model_for_meddata_tests"))
    assert not d.uses_model
    assert covered(d, "Seen by Dr. Whitcombe on 7/22.", "Whitcombe")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Detector(DetectorConfig(model_name="no_such_model_for_meddata_tests"))
    with pytest.raises(RuntimeError, match="required"), pytest.warns(RulesOnlyWarning):
        Detector(DetectorConfig(model="on", model_name="no_such_model_for_meddata_tests_2"))


# -- replacement --------------------------------------------------------------------------
NOTE = ("Mr. John Okafor (MRN 4417293) seen 07/22/2019 by Dr. Brennan at Holloway Memorial Hospital; "
        "wife Maria at bedside, phone (617) 555-1234. Follow-up 08/05/2019. Mother is 96.")


def test_mask_and_redact(det):
    spans = det.detect(NOTE)
    masked = replace_spans(NOTE, spans, "mask")
    for value in ("Okafor", "4417293", "07/22/2019", "Brennan", "Holloway", "Maria", "555-1234"):
        assert value not in masked
    assert "[NAME]" in masked and "[DATE]" in masked and "[PHONE]" in masked
    redacted = replace_spans(NOTE, spans, "redact")
    assert "Okafor" not in redacted and "[" not in redacted


def test_surrogates_are_consistent_keyed_and_never_real(det):
    spans = det.detect(NOTE)
    a1 = replace_spans(NOTE, spans, "surrogate", Surrogates(b"secret", "patient-1"))
    a2 = replace_spans(NOTE, spans, "surrogate", Surrogates(b"secret", "patient-1"))
    b = replace_spans(NOTE, spans, "surrogate", Surrogates(b"other", "patient-1"))
    assert a1 == a2 and a1 != b
    originals = [NOTE[s.start:s.end] for s in spans if s.type != "AGE"]
    for value in originals:
        assert value not in a1, value
    assert "90+" in a1  # ages over 89
    # interval between the two dates survives the shift
    dates = re.findall(r"\d\d/\d\d/\d{4}", a1)
    from datetime import datetime

    d1, d2 = (datetime.strptime(d, "%m/%d/%Y") for d in dates)
    assert (d2 - d1).days == 14
    # same name, same surrogate, inside one text
    text = "Dr. Brennan saw the patient. Brennan will call."
    out = replace_spans(text, det.detect(text), "surrogate", Surrogates(b"secret", "p"))
    first, second = re.match(r"Dr\. (\w+) saw the patient\. (\w+) will call\.", out).groups()
    assert first == second != "Brennan"


def test_date_shift_keeps_shapes_and_weekdays():
    off = timedelta(days=35)
    assert shift_date("07/22/1992", off) == "08/26/1992"
    assert shift_date("7/22", off) == "8/26"
    assert shift_date("July 22nd, 1992", off) == "August 26th, 1992"
    assert shift_date("22-Jul", off) == "26-Aug"
    assert shift_date("1992-07-22", off) == "1992-08-26"
    assert shift_date("Tuesday", off) == "Tuesday"
    s = Surrogates(b"k", "p", keep_weekday=True)
    assert s.offset.days % 7 == 0
    assert s.replace("DATE", "Tuesday") == "Tuesday"


def test_surrogate_key_changes_every_value_shape_kept():
    s = Surrogates(b"k", "p")
    phone = s.replace("PHONE", "(617) 555-1234")
    assert re.fullmatch(r"\(\d{3}\) \d{3}-\d{4}", phone) and phone != "(617) 555-1234"
    assert re.fullmatch(r"9\d\d-\d\d-\d{4}", s.replace("SSN", "123-45-6789"))
    assert s.replace("AGE", "93") == "90+"
    assert s.replace("EMAIL", "jo@x.com").endswith("@example.org")


# -- scoring ------------------------------------------------------------------------------
def test_scoring_lenient_and_strict():
    gold = [{"id": "1", "text": "John Smith was seen on 7/22.",
             "spans": [{"start": 0, "end": 10, "type": "NAME"}, {"start": 23, "end": 27, "type": "DATE"}]}]
    pred = {"1": [{"start": 5, "end": 10, "type": "NAME"}, {"start": 11, "end": 14, "type": "NAME"}]}
    rep = evaluate(gold, pred)
    assert rep.metrics("lenient") == pytest.approx({"recall": 0.5, "precision": 0.5, "f2": 0.5})
    assert rep.metrics("strict")["recall"] == 0.0
    assert map_gold_type("AGE", "45", ages="over_89") is None and map_gold_type("AGE", "92") == "AGE"
    assert map_gold_type("ORGANIZATION") is None
    with pytest.raises(KeyError):
        map_gold_type("NO_SUCH_LABEL")


def test_merge_prefers_structured_evidence():
    spans = merge_spans([Span(0, 5, "NAME", "dict"), Span(3, 9, "DATE", "rule"), Span(20, 25, "LOCATION", "cue"),
                         Span(22, 30, "HOSPITAL", "dict")])
    assert [(s.start, s.end, s.type) for s in spans] == [(0, 9, "DATE"), (20, 30, "HOSPITAL")]
