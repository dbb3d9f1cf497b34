"""meddata.exams: the four exam formats on real samples, malformed input, prompts."""

from __future__ import annotations

import json

import pytest
from testutil import DATA

from meddata.exams import ExamItem, detect_format, load_exam, mcq_prompt, mmlu_subject, read_exam
from meddata.steps import Quarantine

EXAM = DATA / "exam"


@pytest.mark.parametrize(("name", "fmt"), [
    ("medqa_usmle_sample.jsonl", "medqa"),
    ("medmcqa_sample.jsonl", "medmcqa"),
    ("medmcqa_original_layout.jsonl", "medmcqa"),
    ("ori_pqal_sample.json", "pubmedqa"),
    ("anatomy_dev.csv", "mmlu"),
])
def test_detect_format_from_names(name, fmt):
    assert detect_format(EXAM / name) == fmt


def test_detect_format_from_content(tmp_path):
    # the same files under neutral names: the layout decides
    for src, fmt, dst in [("medqa_usmle_sample.jsonl", "medqa", "a.jsonl"),
                          ("medmcqa_sample.jsonl", "medmcqa", "b.jsonl"),
                          ("medmcqa_original_layout.jsonl", "medmcqa", "c.jsonl"),
                          ("ori_pqal_sample.json", "pubmedqa", "d.json"),
                          ("anatomy_dev.csv", "mmlu", "e.csv")]:
        (tmp_path / dst).write_bytes((EXAM / src).read_bytes())
        assert detect_format(tmp_path / dst) == fmt, src
    (tmp_path / "x.json").write_text('{"12": "yes"}')
    with pytest.raises(ValueError, match="cannot tell the exam format"):
        detect_format(tmp_path / "x.json")
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(ValueError, match="unknown exam file type"):
        detect_format(tmp_path / "x.txt")


def test_medqa_items():
    items = load_exam(EXAM / "medqa_usmle_sample.jsonl")
    raw = [json.loads(line) for line in (EXAM / "medqa_usmle_sample.jsonl").open()]
    assert len(items) == len(raw) == 6
    first = items[0]
    assert first.kind == "mcq" and first.answer == raw[0]["answer_idx"]
    assert [label for label, _ in first.options] == list("ABCDE")
    assert first.answer_text == raw[0]["answer"]
    assert first.subject == raw[0]["meta_info"]
    assert first.locator == "medqa_usmle_sample.jsonl line 1"
    assert first.id == "medqa:medqa_usmle_sample.jsonl line 1"
    assert len(items[3].options) == 4  # A-D variant in the same file


def test_medmcqa_both_layouts_agree():
    dict_layout = load_exam(EXAM / "medmcqa_sample.jsonl")[10:20]
    original = load_exam(EXAM / "medmcqa_original_layout.jsonl")  # cop is 1-based by default
    assert len(dict_layout) == len(original) == 10
    for a, b in zip(dict_layout, original, strict=True):
        assert (a.question, a.options, a.answer) == (b.question, b.options, b.answer)
        assert a.id == b.id  # the dataset's own id (realidx / id)
    assert original[0].subject == "Unknown"


def test_medmcqa_cop_base_zero(tmp_path):
    rows = [json.loads(line) for line in (EXAM / "medmcqa_original_layout.jsonl").open()]
    zero = tmp_path / "hf.jsonl"
    zero.write_text("".join(json.dumps({**r, "cop": r["cop"] - 1}) + "\n" for r in rows))
    want = [i.answer for i in load_exam(EXAM / "medmcqa_original_layout.jsonl")]
    assert [i.answer for i in load_exam(zero, "medmcqa", cop_base=0)] == want
    # a 0 under the 1-based default is a clear error, not a silent shift
    first_zero = next(n for n, r in enumerate(rows, 1) if r["cop"] == 1)
    with pytest.raises(ValueError, match=rf"hf.jsonl:line {first_zero}: medmcqa: field 'cop' .*cop_base=0"):
        load_exam(zero, "medmcqa")


def test_pubmedqa_items():
    raw = json.loads((EXAM / "ori_pqal_sample.json").read_text())
    items = load_exam(EXAM / "ori_pqal_sample.json")
    assert [i.id for i in items] == [f"pubmedqa:{k}" for k in raw]
    pmid, rec = next(iter(raw.items()))
    it = items[0]
    assert it.kind == "yes_no_maybe" and it.options == ()
    assert it.answer == rec["final_decision"] and it.long_answer == rec["LONG_ANSWER"]
    assert it.context.split("\n") == rec["CONTEXTS"]
    assert it.locator == f"ori_pqal_sample.json PMID {pmid}"


def test_mmlu_items_and_subject():
    items = load_exam(EXAM / "clinical_knowledge_test.csv")
    assert len(items) == 12
    assert {i.subject for i in items} == {"clinical_knowledge"}
    assert all(i.answer in "ABCD" and len(i.options) == 4 for i in items)
    assert mmlu_subject("professional_medicine_val.csv.gz") == "professional_medicine"


def test_folder_reads_every_file():
    items = [i for i in read_exam(EXAM, "mmlu") if isinstance(i, ExamItem)]
    assert {i.subject for i in items} == {"anatomy", "clinical_knowledge"}
    assert len(items) == 5 + 12


@pytest.mark.parametrize(("fmt", "line", "field"), [
    ("medqa", json.dumps({"question": "Q?", "options": {"A": "x", "B": "y"}, "answer_idx": "C"}), "answer_idx"),
    ("medqa", json.dumps({"question": "Q?", "options": {"A": "x", "B": "y"}, "answer_idx": "A",
                          "answer": "y"}), "answer"),
    ("medqa", json.dumps({"options": {"A": "x", "B": "y"}, "answer_idx": "A"}), "question"),
    ("medqa", json.dumps({"question": "Q?", "options": ["only one"], "answer_idx": "A"}), "options"),
    ("medqa", json.dumps({"question": "Q?", "options": {"A": "x", "B": ""}, "answer_idx": "A"}), "options.B"),
    ("medmcqa", json.dumps({"question": "Q?", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": -1}), "cop"),
    ("medmcqa", json.dumps({"question": "Q?", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": 9}), "cop"),
    ("medmcqa", json.dumps({"question": "Q?", "opa": "a", "opb": "b", "opc": "c", "opd": "d"}), "cop"),
])
def test_malformed_jsonl_quarantined_with_line_and_field(tmp_path, fmt, line, field):
    good = (EXAM / "medqa_usmle_sample.jsonl").read_text().splitlines()[0]
    f = tmp_path / "bad.jsonl"
    f.write_text(good + "\n" + line + "\n" + "{truncated\n")
    out = list(read_exam(f, fmt))
    quarantined = [o for o in out if isinstance(o, Quarantine)]
    assert [q.locator for q in quarantined] == ["line 2", "line 3"]
    assert f"field '{field}" in quarantined[0].error
    assert "invalid JSON" in quarantined[1].error
    with pytest.raises(ValueError, match=r"bad.jsonl:line 2: "):
        load_exam(f, fmt)


def test_malformed_pubmedqa_and_mmlu(tmp_path):
    f = tmp_path / "pq.json"
    f.write_text(json.dumps({"1": {"QUESTION": "Q?", "CONTEXTS": ["c"], "final_decision": "perhaps"},
                             "2": {"QUESTION": "Q?", "CONTEXTS": ["c"]},
                             "3": {"QUESTION": "Q?", "CONTEXTS": ["c"], "final_decision": "no"}}))
    out = list(read_exam(f, "pubmedqa"))
    assert [type(o).__name__ for o in out] == ["Quarantine", "Quarantine", "ExamItem"]
    assert out[0].locator == "PMID 1" and "final_decision" in out[0].error
    (tmp_path / "t.json").write_text('{"1": {"QUESTION": "Q?"')
    with pytest.raises(ValueError, match=r"t.json:line 1: invalid or truncated JSON"):
        load_exam(tmp_path / "t.json", "pubmedqa")
    m = tmp_path / "anatomy_test.csv"
    m.write_text('Q1?,a,b,c,d,B\nQ2?,a,b,c,d,F\nQ3?,a,b,c\n"Q4?",a,b,c,d,a\n')
    out = list(read_exam(m))
    assert [o.locator if isinstance(o, Quarantine) else o.answer for o in out] == ["B", "line 2", "line 3", "A"]
    assert "column 6" in out[1].error and "columns" in out[2].error


def test_latin1_bytes_quarantined(tmp_path):
    f = tmp_path / "medqa.jsonl"
    good = (EXAM / "medqa_usmle_sample.jsonl").read_bytes().splitlines()[0]
    f.write_bytes(good + b"\n" + '{"question": "Caf\u00e9?"}'.encode("latin-1") + b"\n")
    out = list(read_exam(f))
    assert isinstance(out[0], ExamItem)
    assert isinstance(out[1], Quarantine) and "not valid utf-8" in out[1].error and out[1].locator == "line 2"


def test_mcq_prompt_k_shot():
    shots = load_exam(EXAM / "anatomy_dev.csv")[:2]
    item = load_exam(EXAM / "clinical_knowledge_test.csv")[0]
    prompt = mcq_prompt(item, shots)
    blocks = prompt.split("\n\n")
    assert len(blocks) == 3
    assert blocks[0].endswith(f"Answer: {shots[0].answer}")
    assert blocks[-1].startswith(f"Question: {item.question}")
    assert blocks[-1].endswith("\nAnswer:")
    for label, text in item.options:
        assert f"\n{label}. {text}\n" in blocks[-1] + "\n"
    assert item.answer not in blocks[-1].rsplit("Answer:", 1)[1]


def test_pubmedqa_prompt_has_context_and_no_letters():
    item = load_exam(EXAM / "ori_pqal_sample.json")[0]
    prompt = mcq_prompt(item)
    assert prompt.startswith("Context: ") and "yes, no or maybe" in prompt and prompt.endswith("Answer:")
    assert "\nA. " not in prompt
