"""Cleaning steps on real text: QA-site boilerplate, unicode, HTML, PDF artefacts."""

from __future__ import annotations

import json
import re

import pytest
from meddata.filters.boilerplate import StripBoilerplate
from meddata.filters.clean import FixPdfArtifacts
from testutil import DATA, read_jsonl, write_jsonl

from meddata.recipe import RecipeError
from meddata.steps import Drop, StepContext
from meddata.text import (
    DEFAULT_BOILERPLATE,
    BoilerplatePatterns,
    fix_unicode,
    html_to_text,
    normalize,
    split_sentences,
)

HCM = read_jsonl(DATA / "clean" / "hcm_answers.jsonl")
MEDQUAD = [r for r in read_jsonl(DATA / "decontam" / "clean_train.jsonl") if r["source"] == "medquad"]


def words(text: str) -> list[str]:
    return text.split()


@pytest.fixture(scope="module")
def patterns() -> BoilerplatePatterns:
    return BoilerplatePatterns.load([DEFAULT_BOILERPLATE])


@pytest.mark.parametrize("item", HCM, ids=[r["id"] for r in HCM])
def test_boilerplate_removed_from_real_healthcaremagic_answers(patterns, item):
    out, counts = patterns.strip(item["answer"])
    for text in item["keep"]:
        assert text in out, f"content lost: {text!r}"
    for text in item["gone"]:
        assert text.lower() not in out.lower(), f"boilerplate left: {text!r}"
    assert sum(counts.values()) >= 1
    assert out[:1].isupper() or out[:1].isdigit()


def test_medquad_answers_are_left_alone(patterns):
    """Encyclopedia answers have no greetings or sign-offs: at most spacing changes."""
    for row in MEDQUAD:
        out, counts = patterns.strip(row["answer"])
        assert not counts.get("leading") and not counts.get("trailing") and not counts.get("sentences"), row["id"]
        assert "".join(out.split()) == "".join(row["answer"].split()), row["id"]
    assert len(MEDQUAD) == 60


def test_sentence_split_keeps_abbreviations_and_initials():
    text = "Take it twice daily. Regards, Dr. S. R. Raveendran, Sexologist"
    pieces = split_sentences(text)
    assert "".join(pieces) == text
    assert pieces == ["Take it twice daily. ", "Regards, Dr. S. R. Raveendran, Sexologist"]


def test_strip_boilerplate_in_a_build_drops_rows_left_empty(build, tmp_path):
    rows = [{"id": r["id"], "question": "What should I do?", "answer": r["answer"]} for r in HCM]
    rows.append({"id": "only-boilerplate", "question": "Thanks doctor",
                 "answer": "Hi. Thanks for the query. Hope this helps. Regards, Dr. Smith"})
    src = write_jsonl(tmp_path / "hcm.jsonl", rows)
    res = build({
        "name": "hcm-clean",
        "inputs": [{"builder": "table", "path": str(src), "columns": {"id": "id", "user": "question",
                                                                      "assistant": "answer"}}],
        "steps": [{"strip_boilerplate": {"roles": ["assistant"]}}],
        "output": {"formats": ["jsonl"]},
    })
    step = res.steps[-1]
    assert step.dropped == {"empty_after_boilerplate": 1}
    assert step.rows_out == len(HCM)
    assert step.counters["boilerplate.rows_changed"] == len(HCM) + 1  # the dropped row changed too
    dropped = read_jsonl(res.out_dir / "dropped" / f"{step.index:02d}-strip_boilerplate.jsonl")
    assert [d["reason"] for d in dropped] == ["empty_after_boilerplate"]
    out = {r["id"].split(":", 1)[1]: r for r in read_jsonl(res.out_dir / "jsonl" / "train.jsonl")}
    for item in HCM:
        msgs = out[item["id"]]["messages"]
        assert msgs[0]["content"] == "What should I do?"  # user turn untouched (roles: [assistant])
        assert "HealthcareMagic" not in msgs[1]["content"]


def test_custom_patterns_and_bad_patterns(build, tmp_path):
    custom = tmp_path / "site.yaml"
    custom.write_text("site_names: [medibuddy]\nleading:\n  - 'namaste[\\s,!.]*'\n"
                      "sentences:\n  - '[^.!?\\n]*\\b(?:{site})\\b[^.!?\\n]*'\n", encoding="utf-8")
    step = StripBoilerplate(patterns=str(custom), use_default=False)
    step.ensure_setup(StepContext(step_dir=tmp_path))
    row = {"id": "1", "text": "Namaste! Take rest. Thanks for using MediBuddy for your care.", "meta": {}}
    assert step.process(row, StepContext(step_dir=tmp_path))["text"] == "Take rest."

    src = write_jsonl(tmp_path / "x.jsonl", [{"t": "hello"}])
    with pytest.raises(RecipeError) as err:
        build({"name": "bad", "inputs": [{"builder": "table", "path": str(src), "columns": {"text": "t"}}],
               "steps": [{"strip_boilerplate": {"extra_patterns": {"leading": ["(unclosed"]}}}]})
    assert "steps[0]" in str(err.value) and "leading[0]" in str(err.value)
    bad = tmp_path / "bad.yaml"
    bad.write_text("trailing: ['[oops']\n", encoding="utf-8")
    with pytest.raises(RecipeError) as err:
        build({"name": "bad", "inputs": [{"builder": "table", "path": str(src), "columns": {"text": "t"}}],
               "steps": [{"strip_boilerplate": {"patterns": str(bad)}}]})
    assert "bad.yaml: trailing[0]" in str(err.value)


def test_fix_unicode_repairs_mojibake_of_real_text():
    original = MEDQUAD[0]["answer"][:400] + " The patient’s “dose” was 5 µg – twice daily."
    broken = original.encode("utf-8").decode("latin-1")  # read with the wrong codec
    assert broken != original and "â\x80\x99" in broken
    fixed = fix_unicode(broken, "NFC")
    assert fixed == original
    # NFKC would turn superscripts into digits (10⁹/L -> 109/L); they are kept as powers
    assert fix_unicode("WBC 7.2 × 10⁹/L, BSA 1.9 m²") == "WBC 7.2 × 10^9/L, BSA 1.9 m^2"
    assert fix_unicode("ﬁbrosis\u200b") == "fibrosis"


def test_html_to_text_on_a_real_answer_page():
    answer = MEDQUAD[1]["answer"]
    sentences = [s.strip() for s in answer.split(". ") if s.strip()][:3]
    page = (
        "<html><head><title>x</title><style>p {color: red}</style><script>var a = 1 < 2;</script></head>"
        f"<body><h1>{MEDQUAD[1]['question']}</h1><p>{sentences[0]} &amp; more.</p>"
        f"<ul><li>{sentences[1]}</li><li>{sentences[2]}</li></ul><br/>BP &lt; 120</body></html>"
    )
    text = normalize(page)
    lines = text.split("\n")
    assert lines[0] == MEDQUAD[1]["question"]
    assert f"- {sentences[1]}" in lines and f"- {sentences[2]}" in lines
    assert "color" not in text and "var a" not in text
    assert lines[-1] == "BP < 120"
    # plain clinical text with comparison signs is not HTML
    assert html_to_text("BP < 120 and HR > 60 on <5 mg") == "BP < 120 and HR > 60 on <5 mg"
    assert normalize("  <p>Hello&amp;bye</p>\r\n\r\n\r\nX ") == "Hello&bye\n\nX"


def _as_pdf_pages(text: str, width: int = 60, per_page: int = 8) -> str:
    """Lay real text out as pypdf would extract it: wrapped lines, long words hyphenated at
    line ends, a running header and a page-number footer on every page, pages split by \\f."""
    lines, line = [], ""
    for word in text.split():
        if len(line) + len(word) + 1 > width:
            room = width - len(line) - 2
            if len(word) >= 9 and room >= 4 and word.isalpha():
                lines.append(f"{line} {word[:room]}-".strip())
                line = word[room:]
                continue
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    lines.append(line)
    pages = []
    for n, start in enumerate(range(0, len(lines), per_page), start=1):
        body = "\n".join(lines[start:start + per_page])
        pages.append(f"Genetics Home Reference · Consumer Guide\n{body}\n{n}")
    return "\f".join(pages)


def test_fix_pdf_artifacts_restores_the_text(tmp_path):
    text = " ".join(r["answer"] for r in MEDQUAD[:4])
    pdf = _as_pdf_pages(text)
    assert pdf.count("\f") >= 3 and re.search(r"[a-z]-\n[a-z]", pdf)
    step = FixPdfArtifacts()
    row = {"id": "doc", "text": pdf, "meta": {}}
    out = step.process(row, StepContext(step_dir=tmp_path))["text"]
    assert words(out) == words(text)
    stats = step.take_stats()
    assert stats["pdf.header_footer_lines"] == 2 * (pdf.count("\f") + 1)
    assert stats["pdf.hyphens_joined"] >= 3


def test_dehyphenation_keeps_real_compounds(tmp_path):
    text = ("Schedule a follow-up visit.\fThe follow-\nup visit checks the diag-\nnosis.\f"
            "Nothing else.\fEnd of the follow-up plan.")
    out = FixPdfArtifacts(min_repeats=2).process({"id": "d", "text": text, "meta": {}},
                                                 StepContext(step_dir=tmp_path))["text"]
    assert "The follow-up visit checks the diagnosis." in out


def test_cleaning_step_drops_rows_it_empties(tmp_path):
    step = StripBoilerplate()
    step.ensure_setup(StepContext(step_dir=tmp_path))
    row = {"id": "x", "text": "Hello! Thanks for the query. Take care.", "meta": {}}
    out = step.process(row, StepContext(step_dir=tmp_path))
    assert isinstance(out, Drop) and out.reason == "empty_after_boilerplate"
    assert json.dumps(step.take_stats())
