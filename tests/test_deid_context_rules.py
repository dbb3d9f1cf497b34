"""Context rules for names, initials, employers and clock times (issue 16).

Each rule is one a nurse or data engineer would state; the sentences are written for this test,
not copied from the notes the rules were found on.
"""

from __future__ import annotations

import pytest
from meddata.filters.deid.detector import Detector, config_for


@pytest.fixture(scope="module")
def rules() -> Detector:
    return Detector(config_for("safe_harbor", model="off", learned="off"))


def flagged(det: Detector, text: str) -> dict[str, str]:
    return {text[s.start:s.end]: s.type for s in det.detect(text)}


@pytest.mark.parametrize("text, value", [
    ("called kate RN from 7 north re: the bed.", "kate"),
    ("HANDOFF GIVEN TO MARISOL RN AT 1900.", "MARISOL"),
    ("per lakisha NP, hold the 2200 dose.", "lakisha"),
])
def test_a_name_right_before_rn_or_np_is_a_name(rules, text, value):
    assert flagged(rules, text).get(value) == "NAME"


@pytest.mark.parametrize("text", [
    "pt RN aware of plan.", "charge RN notified.", "discussed with night RN.", "bill RN for supplies.",
])
def test_words_before_rn_stay(rules, text):
    assert not any(t == "NAME" for t in flagged(rules, text).values())


@pytest.mark.parametrize("text, value", [
    ("Afebrile overnight. Will cont to monitor. K", "K"),
    ("Tolerating tube feeds at goal.\nT", "T"),
    ("awaiting am labs, family updated.  jm", "jm"),
    ("Plan: wean drip as tolerated. -- J.M.", "J.M."),
])
def test_initials_that_close_a_note_are_names(rules, text, value):
    assert flagged(rules, text).get(value) == "NAME"


@pytest.mark.parametrize("text", [
    "Will continue to monitor. ok",
    "Report given to oncoming RN",
    "Pain controlled with morphine prn",
    "Heart rate 80s, sinus rhythm. BP 110/60",
])
def test_endings_that_are_words_are_not_initials(rules, text):
    assert not any(t == "NAME" for t in flagged(rules, text).values())


@pytest.mark.parametrize("text, value", [
    ("Social: married, works at Raytheon as an engineer.", "Raytheon"),
    ("SOCIAL: RETIRED FROM BETHLEHEM STEEL.", "BETHLEHEM"),
    ("wife employed by medtronic for 12 yrs.", "medtronic"),
    ("Son is the CEO of Acme, lives nearby.", "Acme"),
])
def test_employer_after_a_work_cue_is_flagged(rules, text, value):
    found = flagged(rules, text)
    assert any(value in k for k in found), found


@pytest.mark.parametrize("text", [
    "Works at home, walks daily.", "Retired from the school system.", "works for the city as a driver.",
])
def test_ordinary_workplaces_stay(rules, text):
    assert flagged(rules, text) == {}


@pytest.mark.parametrize("text", [
    "ARRIVED FROM OR APPROX. 2145, SEDATED.", "Lasix given 2230 with good effect.", "PT with pt on Wed/Thurs.",
])
def test_clock_times_and_weekdays_are_not_years_or_places(rules, text):
    assert flagged(rules, text) == {}


def test_a_real_year_still_counts(rules):
    assert flagged(rules, "Diagnosed with CHF in 2011, on lasix since.") == {"2011": "DATE"}
