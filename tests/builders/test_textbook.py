"""Textbook builders: chunking with overlap, heading paths, front/back matter drops, on the real
OpenStax sections, Markdown / HTML / text books and a PDF generated here; recipe; robustness."""

from __future__ import annotations

import json
import re

import pytest
from badinput import BAD_KINDS, assert_bad_input_handled, assert_counts_add_up, bad_bytes, build_damaged
from builder_testkit import build_example, drops_of, one, rows_of, write_pdf
from meddata.builders.textbook import Chunker, classify_page, plain_heading
from testutil import DATA, EXAMPLES, read_jsonl

from meddata import recipe as recipe_mod
from meddata.records import annotations, validate_row

TB = DATA / "textbook"
EXAMPLE_BOOKS = EXAMPLES / "data" / "textbook"  # the recipe's books double as fixtures

BOOK_PAGES = [
    ["Pocket Guide to Cardiology", "Second Edition"],
    ["Copyright 2024 Example Press. All rights reserved.", "ISBN 978-0-00-000000-0", "Printed in the United States."],
    ["Contents", "1 Heart Failure ........ 4", "1.1 Definition ........ 4", "2 Atrial Fibrillation ........ 5",
     "Index ........ 6"],
    ["Chapter 1 Heart Failure",
     "Heart failure is a clinical syndrome in which the heart cannot pump enough blood to",
     "meet the needs of the body, or can do so only at raised filling pressures. It is com-",
     "mon in older adults.",
     "1.1 Definition",
     "Heart failure with reduced ejection fraction has an ejection fraction of 40% or less.",
     "Heart failure with preserved ejection fraction has an ejection fraction of 50% or more.",
     "4"],
    ["Chapter 2 Atrial Fibrillation",
     "Atrial fibrillation is the most common sustained arrhythmia. Stroke prevention rests on",
     "the CHA2DS2-VASc score.", "5"],
    ["Index", "anticoagulation, 5", "ejection fraction, 4", "heart failure, 4-5", "stroke, 5"],
]


def paths_of(rows: list[dict]) -> list[list[str]]:
    return [annotations(r)["heading_path"] for r in rows]


# -- chunking ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("unit,size,overlap", [("chars", 300, 80), ("tokens", 40, 12)])
def test_chunker_budget_overlap_and_order(unit, size, overlap):
    sentences = [f"Sentence number {i} talks about {'cardiac ' * (i % 7)}physiology." for i in range(120)]
    paragraphs = [" ".join(sentences[i:i + 6]) for i in range(0, 120, 6)]
    ch = Chunker(size, overlap, unit)
    chunks = [c for p in paragraphs for c in ch.add(p)] + ch.finish()
    measure = (lambda t: len(t.split())) if unit == "tokens" else len
    assert all(measure(c) <= size for c in chunks)
    # each chunk starts with a tail of the previous one (the overlap, within budget), and reading the
    # chunks in order without those overlaps gives back the text, every sentence once, in order
    norm = [" ".join(c.split()) for c in chunks]
    rebuilt = norm[0]
    for prev, cur in zip(norm, norm[1:]):
        shared = next(n for n in range(min(len(prev), len(cur)), 0, -1) if prev.endswith(cur[:n]))
        assert 0 < measure(cur[:shared]) <= overlap, "consecutive chunks overlap within the budget"
        rebuilt += cur[shared:]
    assert " ".join(rebuilt.split()) == " ".join(" ".join(paragraphs).split())
    # a single word over the budget is cut, never dropped
    ch = Chunker(60, 10, "chars")
    assert "".join(ch.add("x" * 150) + ch.finish()) == "x" * 150


def test_bad_chunk_params_fail_when_the_recipe_loads(build):
    with pytest.raises(recipe_mod.RecipeError, match="chunk_overlap.*smaller than chunk_size"):
        build(one("textbook", TB / "pharmacology_notes.txt", chunk_size=100, chunk_overlap=100))


def test_plain_text_heading_rules():
    assert plain_heading("Chapter 3: Pharmacology") == (2, "Chapter 3: Pharmacology")
    assert plain_heading("2.4 Loop Diuretics") == (3, "2.4 Loop Diuretics")
    assert plain_heading("CLINICAL FEATURES") == (3, "CLINICAL FEATURES")
    assert plain_heading("Index") == (2, "Index")
    assert plain_heading("2.4 Loop Diuretics ........ 37") is None  # a table-of-contents line
    assert plain_heading("The dose is 40 mg twice daily.") is None
    assert plain_heading("Bleeding risk", {"bleeding risk": 2}) == (2, "Bleeding risk")


def test_page_classification():
    assert classify_page("\n".join(BOOK_PAGES[0]), 0, 6) == "front_matter"
    assert classify_page("\n".join(BOOK_PAGES[1]), 1, 6) == "front_matter"
    assert classify_page("\n".join(BOOK_PAGES[2]), 2, 6) == "front_matter"
    assert classify_page("\n".join(BOOK_PAGES[5]), 5, 6) == "back_matter"
    assert classify_page("\n".join(BOOK_PAGES[3]), 3, 6) is None


# -- real and format samples -------------------------------------------------------------------------------


def test_openstax_sections_real_sample(build):
    records = read_jsonl(TB / "openstax_ap2e_sections_sample.jsonl")
    result = build(one("textbook_jsonl", TB / "openstax_ap2e_sections_sample.jsonl", licence="CC-BY-NC-SA-4.0",
                       chunk_size=1500, chunk_overlap=200))
    assert_counts_add_up(result)
    rows = rows_of(result)
    drops = drops_of(result)
    assert result.totals["quarantined"] == 0
    # the Preface (front matter) and the References section are dropped, with their reasons
    assert {d["reason"] for d in drops} == {"front_matter", "back_matter"}
    assert all(annotations(d)["heading_path"][-1] == "References" for d in drops if d["reason"] == "back_matter")
    assert all("Preface" in annotations(d)["heading_path"] for d in drops if d["reason"] == "front_matter")
    assert not any("Preface" in p for p in paths_of(rows))
    for r in rows:
        assert validate_row(r) == "language_modeling"
        assert r["meta"]["phi_status"] == "not_applicable" and r["meta"]["licence"] == "CC-BY-NC-SA-4.0"
        assert len(r["text"]) <= 1500
    # heading paths start with unit > chapter > title and go down to the ## sections
    rec = records[2]
    own = [p for p in paths_of(rows) if p[:3] == [rec["unit"], rec["chapter"], rec["title"]]]
    blocks = re.split(r"^## (.+)$", rec["text"], flags=re.M)  # [intro, title, body, title, body, ...]
    with_text = {t for t, body in zip(blocks[1::2], blocks[2::2])
                 if any(ln.strip() and not ln.startswith("#") for ln in body.splitlines())}
    assert with_text and {p[3] for p in own if len(p) > 3} == with_text
    # every paragraph of a kept section is somewhere in the chunks
    body = "\n".join(r["text"] for r in rows)
    for para in rec["text"].split("\n\n"):
        para = para.strip()
        if para and not para.startswith("#"):
            first_sentence = re.split(r"(?<=[.!?])\s", para)[0][:200]
            assert first_sentence in body


def test_markdown_book(build):
    result = build(one("textbook", EXAMPLE_BOOKS / "cardiology_pocket_guide.md", chunk_size=300, chunk_overlap=60,
                       heading_prefix="path"))
    rows = rows_of(result)
    assert paths_of(rows)[0] == ["Chapter 1 Heart Failure"]
    assert ["Chapter 1 Heart Failure", "1.1 Definition and Classification"] in paths_of(rows)
    assert rows[1]["text"].startswith("Chapter 1 Heart Failure > 1.1 Definition and Classification\n\n")
    reasons = {d["reason"]: annotations(d)["heading_path"][-1] for d in drops_of(result)}
    assert reasons == {"front_matter": "Contents", "exercises": "Review Questions", "back_matter": "Index"}
    assert not any("Which drug classes" in r["text"] for r in rows)  # exercises never reach pretraining
    assert any("Target doses: bisoprolol" in r["text"] for r in rows)  # fenced block kept as text
    assert len({r["id"] for r in rows}) == len(rows)


def test_html_guideline(build):
    result = build(one("textbook", EXAMPLE_BOOKS / "hypertension_guideline.html"))
    rows = rows_of(result)
    assert paths_of(rows) == [["Hypertension in Adults"], ["Hypertension in Adults", "1 Diagnosis"],
                              ["Hypertension in Adults", "1 Diagnosis", "1.1 Measuring blood pressure"],
                              ["Hypertension in Adults", "2 Treatment"]]
    text = "\n".join(r["text"] for r in rows)
    for boilerplate in ("tracking", "Home", "font:", "All rights reserved", "Society of Example Medicine"):
        assert boilerplate not in text
    assert "Measure in both arms; repeat if the difference is more than 15 mmHg." in text
    assert [d["reason"] for d in drops_of(result)] == ["back_matter"]


def test_plain_text_book(build):
    result = build(one("textbook", TB / "pharmacology_notes.txt"))
    rows = rows_of(result)
    assert paths_of(rows) == [["Chapter 1 Anticoagulants"],
                              ["Chapter 1 Anticoagulants", "1.1 Direct oral anticoagulants"],
                              ["Chapter 2 Antibiotics"]]
    assert "clotting factors II, VII, IX and X. Its effect" in rows[0]["text"]  # wrapped lines re-joined
    assert [d["reason"] for d in drops_of(result)] == ["front_matter"]  # the CONTENTS list


def test_generated_pdf(build, tmp_path):
    pdf = write_pdf(tmp_path / "book.pdf", BOOK_PAGES)
    result = build(one("textbook", pdf, chunk_size=400, chunk_overlap=50))
    assert_counts_add_up(result)
    rows = rows_of(result)
    assert paths_of(rows) == [["Chapter 1 Heart Failure"], ["Chapter 1 Heart Failure", "1.1 Definition"],
                              ["Chapter 2 Atrial Fibrillation"]]
    assert [r["meta"]["locator"] for r in rows] == ["page 4 section 1 chunk 0", "page 4 section 2 chunk 0",
                                                    "page 5 section 3 chunk 0"]
    assert "It is common in older adults." in rows[0]["text"]  # hyphenation at the line end undone
    assert not any(re.search(r"^\d+$", r["text"], re.M) for r in rows)  # page numbers gone
    drops = {d["meta"]["locator"]: d["reason"] for d in drops_of(result)}
    assert drops == {"page 1": "front_matter", "page 2": "front_matter", "page 3": "front_matter",
                     "page 6": "back_matter"}


def test_pdf_outline_marks_unnumbered_headings(build, tmp_path):
    pages = [["Anticoagulation", "Warfarin needs INR monitoring with a target of 2.0 to 3.0.",
              "Bleeding risk", "Assess bleeding risk before starting and at every review visit."],
             ["Reversal", "Vitamin K and prothrombin complex concentrate reverse warfarin."]]
    pdf = write_pdf(tmp_path / "anticoag.pdf", pages,
                    outline=[("Anticoagulation", 0, 1), ("Bleeding risk", 0, 2), ("Reversal", 1, 1)])
    rows = rows_of(build(one("textbook", pdf)))
    assert paths_of(rows) == [["Anticoagulation"], ["Anticoagulation", "Bleeding risk"], ["Reversal"]]


def test_damaged_pdfs_are_quarantined(build, tmp_path):
    folder = tmp_path / "pdfs"
    folder.mkdir()
    good = write_pdf(tmp_path / "good.pdf", BOOK_PAGES).read_bytes()
    (folder / "truncated.pdf").write_bytes(good[: len(good) // 3])
    (folder / "junk.pdf").write_bytes(bad_bytes("binary", b""))
    (folder / "empty.pdf").write_bytes(b"")
    result = build(one("textbook", folder))
    q = assert_bad_input_handled(result, folder)
    assert {e["file"].rsplit("/", 1)[-1] for e in q} == {"truncated.pdf", "junk.pdf", "empty.pdf"}


def test_textbook_recipe_builds_and_rows_validate(build):
    result, rows = build_example(build, "textbook")
    assert result.totals["quarantined"] == 0
    files = {r["meta"]["file"].rsplit(".", 1)[-1] for r in rows}
    assert {"jsonl", "md", "html", "pdf"} <= files
    for n, r in enumerate(rows):
        assert validate_row(r, where=f"textbook row {n}") == "language_modeling"
        assert annotations(r)["heading_path"]


# -- robustness --------------------------------------------------------------------------------------------------

GOOD = {
    "textbook.txt": ("textbook", "book.txt", b"Chapter 1 Pain\n\nChest pain is an unpleasant sensation.\n"),
    "textbook.html": ("textbook", "book.html", b"<h1>Pain</h1><p>Chest pain is an unpleasant sensation.</p>"),
    "textbook_jsonl": ("textbook_jsonl", "sections.jsonl",
                       b'{"unit": "U", "chapter": "C", "title": "Pain", "text": "Chest pain is unpleasant."}\n'),
}


@pytest.mark.parametrize("kind", BAD_KINDS)
@pytest.mark.parametrize("case", sorted(GOOD))
def test_robustness_bad_inputs_quarantine_and_finish(case, kind, build, tmp_path):
    builder, name, good = GOOD[case]
    result = build_damaged(build, tmp_path, builder, {name: good}, kind)
    if kind != "latin1":
        assert result.totals["out"] == 0
    else:  # the lines that decode still make text, the bad line is in the quarantine
        assert all("caf" not in r["text"] for r in rows_of(result))
    assert all(json.loads(line)["file"] for line in (result.out_dir / "quarantine.jsonl").open())
