"""Rebuild ``medical_terms.txt``, the vocabulary of the ``medical_density_filter`` step.

    python filters/data/make_medical_terms.py ../shared/data/medquad/medquad.jsonl \
        ../shared/data/chatdoctor-genmedgpt5k/format_dataset.csv

Sources (all openly licensed, see SOURCES.md): MedQuAD ``focus`` of the Disorders group
(CC BY 4.0), the ChatDoctor disease table's diseases, symptoms, tests and medications
(Apache-2.0), and ``clinical_terms.txt`` written by hand. Single words are also taken from
multi-word terms when they occur in at least two terms and are not everyday English
(``GENERAL`` below), so "fibrosis" counts on its own, "type" and "smith" do not.
"""

from __future__ import annotations

import ast
import csv
import json
import re
import sys
from collections import Counter
from pathlib import Path

HERE = Path(__file__).parent
TOKEN = re.compile(r"[a-z0-9]+(?:['\-][a-z0-9]+)*")

# Everyday words found inside medical terms (plus common surnames of eponyms).
GENERAL = frozenset("""
a an the and or of to in on at by for with without from into than over after during around about
what need know related other due like all both each per via not non plus also only very more most
type types form forms kind part parts side sides body bodies human male female man men woman women
child children baby babies infant adult adults older young early late onset long short small large
big high low lower upper right left total partial complete combined complex simple isolated common
normal abnormal unusual increased decreased elevated sudden unknown cause causes problem problems
feeling looks appearing appearance features size shape sequence spectrum variant control prevent
keep guide choosing service american care health healthy family history risk exam evaluation
measurement methods function removal repair insertion behavior personality learning attention
movement motion sensation smell taste breath breathing weight appetite episodes attack block arrest
factor factors organs fluid solution preparation extract product products drug drugs test tests
severe mild moderate primary secondary multiple single double triple day days night winter sun air
gas hot cold heat cat animal silver ring berry mal bare band core chain pure flat broken sharp loose
open closed red blue gray grey brown green black white yellow dry deep soft hard free general
new old first second third living use used using including include associated induced inherited
smith jones johnson miller thompson wilson pearson hunter collins patterson carlson jensen fraser
jackson williams taylor davis clark lewis walker young allen king wright scott green baker adams
van von der de la le du ii iii iv vi vii viii ix xi topical oral nasal product ophthalmic
back face head hand time home your color costa west french african amish divorce evict floods errors
recent monitor matter system limited strain storage mixed heavy graham myers terrell turner usher coats
maple lattice muse portia sonata fleet align redux compro trigger split spots polar nuclear digital
linear lateral central giant painful sparse excess failure mosaic tension triad panel screen culture
scan flow fusion cycle periods tear tunnel spider sponge carbon voice sleep smoking stress sexual
speech loss memory rate mass growth birth services tube
""".split())


def _clean(term: str) -> str | None:
    term = re.sub(r"\s*\([^)]*\)", "", term.lower()).strip()  # "alprazolam (xanax)" -> "alprazolam"
    term = " ".join(TOKEN.findall(term))
    if not term or len(term) < 3 or term in GENERAL:
        return None
    return term if len(term.split()) <= 6 else None


def _brand(term: str) -> str | None:
    m = re.search(r"\(([^)]+)\)", term)
    return _clean(m.group(1)) if m else None


def from_medquad(path: Path) -> set[str]:
    out = set()
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            if rec.get("semantic_group") == "Disorders" and rec.get("focus"):
                t = _clean(rec["focus"])
                if t:
                    out.add(t)
    return out


def from_chatdoctor(path: Path) -> set[str]:
    out = set()
    with path.open(encoding="utf-8", newline="") as fh:
        for rec in csv.DictReader(fh):
            values = [rec.get("disease") or ""]
            for col in ("Symptom", "TestsAndProcedures", "commonMedications"):
                try:
                    values += list(ast.literal_eval(rec.get(col) or "[]"))
                except (ValueError, SyntaxError):
                    continue
            for v in values:
                for t in (_clean(v), _brand(v)):
                    if t:
                        out.add(t)
    return out


def from_handwritten(path: Path) -> set[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return {t for line in lines if line.strip() and not line.startswith("#") and (t := _clean(line))}


def single_words(terms: set[str]) -> set[str]:
    counts: Counter[str] = Counter()
    for t in terms:
        counts.update(set(t.split()))
    return {w for w, n in counts.items() if n >= 2 and len(w) >= 4 and w not in GENERAL and not w.isdigit()}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__)
        return 2
    terms = from_medquad(Path(argv[0])) | from_chatdoctor(Path(argv[1]))
    terms |= single_words(terms)
    terms |= from_handwritten(HERE / "clinical_terms.txt")
    header = [
        "# Medical vocabulary for meddata's medical_density_filter; one lowercase term per line.",
        "# Built by make_medical_terms.py from MedQuAD focus terms (CC BY 4.0, Ben Abacha &",
        "# Demner-Fushman 2019), the ChatDoctor disease table (Apache-2.0, Li et al. 2023) and",
        "# clinical_terms.txt (meddata authors). See SOURCES.md.",
    ]
    (HERE / "medical_terms.txt").write_text("\n".join(header + sorted(terms)) + "\n", encoding="utf-8")
    print(f"wrote {len(terms)} terms to {HERE / 'medical_terms.txt'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
