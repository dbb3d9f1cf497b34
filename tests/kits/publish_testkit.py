"""Inputs shared by the publishing tests (mix, card, push, report, tool configs).

The raw clinical source is 12 Synthea notes with their patients' PHI written in and listed
(``phi``), so a test can check that none of it survives the real ``deid`` step or reaches a
card or report. The de-identification in these tests runs rules and dictionaries only
(``model: off``): the same detector, seconds instead of a spaCy load.
"""

from __future__ import annotations

import json

from testutil import DATA

PUBLISH = DATA / "publish"
MEDQUAD = {"builder": "table", "path": str(PUBLISH / "medquad.jsonl"), "source": "medquad",
           "licence": "CC-BY-4.0", "columns": {"id": "qid", "user": "question", "assistant": "answer"}}
CHATDOCTOR = {"builder": "table", "path": str(PUBLISH / "chatdoctor.json"), "source": "chatdoctor",
              "licence": "Apache-2.0", "columns": {"user": "input", "assistant": "output"}}
OPENSTAX = {"builder": "table", "path": str(PUBLISH / "openstax_glossary.jsonl"), "source": "openstax",
            "licence": "CC-BY-NC-SA-4.0", "columns": {"user": "What does the term '{term}' mean?",
                                                      "assistant": "{definition}"}}
SYNTHEA = {"builder": "table", "path": str(PUBLISH / "synthea_notes_phi.jsonl"), "source": "synthea_notes",
           "licence": "synthetic", "phi_status": "raw",
           "columns": {"id": "doc_id", "text": "text", "patient_id": "patient_id"}}
#: The real de-identification step as these tests run it.
DEID = {"deid": {"strategy": "mask", "model": "off"}}


def synthea_notes() -> list[dict]:
    with (PUBLISH / "synthea_notes_phi.jsonl").open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def synthea_phi() -> list[str]:
    """The patients' known PHI values (names, dates of birth, MRNs, SSNs, phones, addresses)."""
    values = sorted({v for note in synthea_notes() for v in note["phi"]})
    assert len(values) > 40  # 6 patients x 9 kinds of identifier
    return values
