"""Recall and precision floors on the gold sets (lenient overlap, binary "is PHI").

Gold sets (tests/data/deid, see SOURCES.md): meddata's own clinical notes (ALL-CAPS nursing
notes, lower-case notes, letters, discharge summaries), ASQ-PHI clinician queries and
presidio-research synthetic sentences. ASQ-PHI and presidio follow the Safe Harbor minimum
(no ages under 90, no bare years), so they are scored with the safe_harbor policy.
"""

from __future__ import annotations

import pytest
from meddata.filters.deid.detector import Detector, config_for
from meddata.filters.deid.evaluate import evaluate, load_gold
from testutil import DATA

DEID = DATA / "deid"
# (gold file, gold ages, policy, {model: (min recall, min precision)}, min strict recall)
CASES = [
    ("clinical_gold.jsonl", "all", "recall", {"off": (0.97, 0.93), "auto": (0.97, 0.93)}, 0.90),
    ("asq_phi_subset.jsonl", "over_89", "safe_harbor", {"off": (0.97, 0.95), "auto": (0.97, 0.93)}, 0.88),
    ("presidio_synth_subset.jsonl", "over_89", "safe_harbor", {"off": (0.70, 0.85), "auto": (0.72, 0.85)}, 0.55),
]


@pytest.fixture(scope="module")
def detectors():
    cache: dict[tuple[str, str], Detector] = {}

    def get(policy: str, model: str) -> Detector:
        if (policy, model) not in cache:
            cache[policy, model] = Detector(config_for(policy, model=model))
        return cache[policy, model]
    return get


@pytest.mark.parametrize("model", ["off", "auto"])
@pytest.mark.parametrize("name, ages, policy, floors, strict", CASES, ids=[c[0].split(".")[0] for c in CASES])
def test_gold_floor(detectors, name, ages, policy, floors, strict, model):
    if model == "auto":
        pytest.importorskip("spacy")
    gold = load_gold(DEID / name, ages=ages)
    det = detectors(policy, model)
    preds = det.detect_many([g["text"] for g in gold])
    report = evaluate(gold, {g["id"]: [s.as_dict() for s in p] for g, p in zip(gold, preds)})
    m = report.metrics("lenient")
    min_recall, min_precision = floors[model]
    assert m["recall"] >= min_recall, report.format()
    assert m["precision"] >= min_precision, report.format()
    assert report.metrics("strict")["recall"] >= strict, report.format()


def test_caps_and_lower_case_notes_hold_up(detectors):
    """The ALL-CAPS nursing and lower-case notes are where spaCy cannot help: rules carry them."""
    gold = [g for g in load_gold(DEID / "clinical_gold.jsonl") if g["id"].startswith("gen")]
    import json

    cases = {json.loads(line)["id"]: json.loads(line)["case"] for line in (DEID / "clinical_gold.jsonl").open()}
    det = detectors("recall", "off")
    for case in ("caps", "lower"):
        subset = [g for g in gold if cases[g["id"]] == case]
        assert len(subset) >= 4
        preds = det.detect_many([g["text"] for g in subset])
        report = evaluate(subset, {g["id"]: [s.as_dict() for s in p] for g, p in zip(subset, preds)})
        assert report.metrics("lenient")["recall"] >= 0.97, (case, report.format())
