"""Medical knowledge for precision, Safe Harbor shapes for recall (issue 16).

Each case is a rule a clinician would state, checked on sentences written for this test
(not copied from the notes the rule was found on).
"""

from __future__ import annotations

import pytest
from deid_rules import flagged
from meddata.filters.deid.detector import Detector, config_for
from meddata.filters.deid.dictionaries import lexicon
from meddata.filters.deid.spans import Span
from meddata.filters.deid.tokens import tokenize


@pytest.mark.parametrize("text", [
    # drugs and brands from the public drug vocabulary, capitalized like names
    "Started on Zosyn and Natrecor overnight; Mavik held.",
    "CONT ON PROTONIX, ZOFRAN PRN. NATRECOR OFF.",
    # eponymous diseases: never a person, whatever the capitals
    "Known Charcot-Marie-Tooth disease and prior Guillain Barre.",
    "HX OF STEVENS JOHNSON SYNDROME.",
    # everyday words that are also surnames, in ALL-CAPS lines
    "ATE SOME PUDDING AND CUSTARD. SPEAKS ENGLISH ONLY. WIFE AT BEDSIDE.",
    # exam shorthand that is also a first name
    "NEURO: PERLA, OPENS EYES TO VOICE.",
    # insurers and feeds
    "Has Medicaid; tube feeds of Nepro at goal.",
    # a lone R is right, not R.N.; shorthand before "PA"/"PT" in caps lines; cues stay on their line
    "BRUISES NOTED ON LEGS R AND L. SHEATH IN R. GROIN.",
    "MAG REPLETION, PT TOLERATED WELL. HYPOTENSIVE, PA PRESSURES UP.",
    "GAVE SENNA/MOM\nGU--FOLEY DRAINING",
    "responds to name, is able to squeeze hands",
    # dialogue transcripts: speaker labels, fillers, a doctor addressed by title
    "Doctor: Any allergies?\nPatient: Nope. Well, penicillin maybe.\nGuest_family: Yeah, penicillin.",
    "Doctor, I've had a cough for two weeks. Hello again, doctor.",
])
def test_medical_and_everyday_words_are_not_names(rules, text):
    assert not flagged(rules, text), flagged(rules, text)


@pytest.mark.parametrize("text, value", [
    ("Seen by Dr. Charcot today.", "Charcot"),          # a cue still wins over the vocabulary
    ("WIFE CUSTARD CALLED AT 1400.", "CUSTARD"),        # relative cue in an ALL-CAPS line
    ("Met with Grace Johnson, daughter.", "Grace Johnson"),
])
def test_cues_still_find_names_that_are_words(rules, text, value):
    assert value in " ".join(flagged(rules, text)), flagged(rules, text)


@pytest.mark.parametrize("text, value, typ", [
    ("PMH: HTN, DM, MI 88, CABG x3.", "88", "DATE"),                  # two-digit years after an event
    ("PAST HX: CVA 79'. APPY 64'.", "79", "DATE"),
    ("Her birthday is October twenty second, nineteen forty.", "October twenty second, nineteen forty", "DATE"),
    ("She says she will turn ninety-one in June.", "ninety-one", "AGE"),
    ("Daughter can be reached at (617555-0142).", "617555-0142", "PHONE"),
    ("admitted from university of vermont yesterday", "university of vermont", "HOSPITAL"),
    ("TRANSFERRED FROM UNIV OF MASS FOR CABG", "UNIV OF MASS", "HOSPITAL"),    # a state's short form
    ("Mail to PSC 1234, Box 5678, APO AE 09021 please.", "PSC 1234, Box 5678, APO AE 09021", "LOCATION"),
])
def test_safe_harbor_shapes_are_found(rules, text, value, typ):
    assert flagged(rules, text).get(value) == typ, flagged(rules, text)


@pytest.mark.parametrize("text", [
    "HR 88, BP 120/70, EF 35%. MI ruled out.",       # numbers after abbreviations are not years
    "Pain for five years; 67 year old; seen Tuesday; lives in Ohio.",  # kept under Safe Harbor
    "He is ninety percent better. rr 12-15, 1-2 loose stools.",
])
def test_clinical_numbers_are_kept_under_safe_harbor(rules, text):
    assert not flagged(rules, text), flagged(rules, text)


def test_learned_spans_pass_the_vocabulary_veto_and_the_policy(rules):
    """The learned model's guesses are vetted like any evidence: known words need a cue,
    unknown words and names stay, ages under 90 and weekdays follow the policy."""
    text = "VANCO GIVEN. wife bill called. Spoke with Zorbeck re plan. Age 45, seen Tuesday, 93 yo."
    toks = tokenize(text)

    def span(value: str, typ: str) -> Span:
        i = text.index(value)
        return Span(i, i + len(value), typ, "model")

    guesses = [span("VANCO", "NAME"), span("bill", "NAME"), span("Zorbeck", "NAME"), span("45", "AGE"),
               span("Tuesday", "DATE"), span("93", "AGE")]
    kept = {text[s.start:s.end] for s in rules.vet_learned(text, toks, guesses)}
    assert kept == {"bill", "Zorbeck", "93"}
    recall = Detector(config_for("recall", model="off", learned="off"))
    assert {text[s.start:s.end] for s in recall.vet_learned(text, toks, guesses)} == {
        "bill", "Zorbeck", "45", "Tuesday", "93"}


def test_medical_vocabulary_keeps_names_and_places_out():
    """The shipped medical vocabulary never holds a first name, a frequent surname or a town."""
    lex = lexicon()
    assert {"natrecor", "mavik", "zosyn", "charcot"} <= lex.medical
    assert not {"john", "mary", "smith", "boston", "lyme", "texas"} & lex.medical
    assert ("charcot", "marie") in lex.eponyms["charcot"]


def test_combined_is_a_vetted_union_of_rules_and_learned_model():
    """learned: on adds the shipped model's spans to the rules' (never fewer), and its guesses
    on drug names and everyday words in caps lines are vetoed."""
    pytest.importorskip("spacy")
    combined = Detector(config_for("safe_harbor", model="off", learned="on"))
    assert combined.uses_learned
    rules_only = Detector(config_for("safe_harbor", model="off", learned="off"))
    texts = ["NATRECOR AND VANCO GIVEN. BLOOD SUGAR 120. SPEAKS ENGLISH.",
             "Spoke with Kaczmarczyk about the plan; daughter Rosalind phoned at 3pm.",
             "PT FROM MARBLEHEAD, SEEN BY DR. KOHN ON 3/15/08. MI '92."]
    assert not combined.detect(texts[0])
    for text, ours, theirs in zip(texts, rules_only.detect_many(texts), combined.detect_many(texts)):
        covered = [(s.start, s.end) for s in theirs]
        assert all(any(a <= s.start and s.end <= b for a, b in covered) for s in ours), text
