"""QA-site builders: raw MedQuAD XML, StackExchange Posts.xml, HealthCareMagic-style Alpaca
JSON, their boilerplate cleaning (the one engine of meddata.text), the example recipe and
malformed input."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from badinput import bad_inputs, check_robust_build, robust_cases
from testutil import DATA, EXAMPLES, read_jsonl

from meddata import text
from meddata.io import iter_json_values
from meddata.records import validate_row
from meddata.steps import Quarantine

QA = DATA / "qa"
POSTS = QA / "stackexchange" / "Posts.xml"


def _rows(result) -> list[dict]:
    path = result.out_dir / "jsonl" / "train.jsonl"
    return read_jsonl(path) if path.exists() else []


def _turns(row: dict) -> dict[str, str]:
    return {m["role"]: m["content"] for m in row["messages"]}


# --------------------------------------------------------------------------- MedQuAD XML


def test_medquad_every_collection(build):
    files = sorted((QA / "medquad_xml").glob("*.xml"))
    assert len(files) == 12
    pairs = {f.name: len(re.findall(r"<QAPair\b", f.read_text())) for f in files}
    empty = {f.name: len(re.findall(r"<Answer>\s*</Answer>|<Answer/>", f.read_text())) for f in files}
    result = build({"name": "medquad", "inputs": [{"builder": "medquad_xml", "path": str(QA / "medquad_xml")}]})
    rows = _rows(result)
    assert result.totals["read"] == sum(pairs.values())
    assert len(rows) == sum(pairs.values()) - sum(empty.values())
    assert result.steps[0].dropped == {"answer_removed": sum(empty.values())}
    assert len({r["id"] for r in rows}) == len(rows)
    collections = set()
    for row in rows:
        assert validate_row(row) == "conversational"
        ann = json.loads(row["meta"]["annotations"])
        collections.add(ann["collection"])
        assert ann["focus"] and ann["qtype"] and row["meta"]["locator"].startswith("line ")
        assert not re.search(r"\s[?]$", _turns(row)["user"])  # "X ?" -> "X?"
    # every collection with answers in the public release yields rows (10-12 ship none)
    assert collections == {"CancerGov", "GARD", "GHR", "MPlusHealthTopics", "NIDDK", "NINDS", "NIHSeniorHealth",
                           "NHLBI", "CDC"}


def test_medquad_locator_points_at_the_pair(build):
    f = QA / "medquad_xml" / "3_GHR_QA_0000001.xml"
    result = build({"name": "ghr", "inputs": [{"builder": "medquad_xml", "path": str(f)}]})
    lines = f.read_text().splitlines()
    for row in _rows(result):
        n = int(row["meta"]["locator"].split()[1])
        assert "<QAPair" in lines[n - 1]
        assert lines[n].strip().startswith("<Question")


# --------------------------------------------------------------------------- StackExchange


@pytest.mark.parametrize(("params", "expected", "dropped"), [
    ({}, {1: 3, 2: 5, 8: 10}, {"no_answer": 1}),
    ({"min_score": 5}, {1: 3, 8: 10}, {"no_answer": 1, "below_min_score": 1}),
    ({"answer": "top"}, {1: 3, 2: 5, 8: 9}, {"no_answer": 1}),
    ({"answer": "accepted"}, {1: 3, 8: 10}, {"no_answer": 2}),
    ({"tags": ["fever"]}, {8: 10}, {"other_tag": 3}),
])
def test_stackexchange_answer_choice(build, params, expected, dropped):
    result = build({"name": "se", "inputs": [{"builder": "stackexchange", "path": str(POSTS), **params}]})
    rows = _rows(result)
    got = {json.loads(r["meta"]["annotations"])["post_id"]: json.loads(r["meta"]["annotations"])["answer_id"]
           for r in rows}
    assert got == expected
    assert result.steps[0].dropped == dropped
    assert result.steps[0].counters["stackexchange.skipped_post_type_4"] == 1  # the tag wiki row


def test_stackexchange_text_is_clean(build):
    result = build({"name": "se", "inputs": [{"builder": "stackexchange", "path": str(POSTS)}]})
    rows = {r["id"]: _turns(r) for r in _rows(result)}
    q1 = rows["stackexchange:1"]
    assert q1["user"].startswith("Why does ibuprofen upset the stomach more than paracetamol?\n\nBoth are")
    assert "<" not in q1["user"] + q1["assistant"] and "&amp;" not in rows["stackexchange:2"]["assistant"]
    assert "- less mucus and bicarbonate secretion\n- reduced mucosal blood flow" in q1["assistant"]
    assert "Hope this helps" not in q1["assistant"] and q1["assistant"].endswith("See this review.")
    assert "4 months after a tattoo & longer" in rows["stackexchange:2"]["assistant"]
    fever = rows["stackexchange:8"]["assistant"]
    assert "Dr. J. Smith" not in fever and "Regards" not in fever and fever.endswith("speeds up immune cells.")
    meta = next(r["meta"] for r in _rows(result) if r["id"] == "stackexchange:1")
    assert meta["licence"] == "CC BY-SA 3.0"  # the post's own ContentLicense


def test_stackexchange_answers_before_questions(build, tmp_path):
    """Dumps do not promise questions come first; the join must not depend on order."""
    lines = POSTS.read_text().splitlines()
    rows = [line for line in lines if line.strip().startswith("<row")]
    shuffled = tmp_path / "Posts.xml"
    shuffled.write_text("\n".join([lines[0], lines[1], *reversed(rows), "</posts>"]) + "\n")
    a = _rows(build({"name": "a", "inputs": [{"builder": "stackexchange", "path": str(POSTS)}]}, out=tmp_path / "a"))
    b = _rows(build({"name": "b", "inputs": [{"builder": "stackexchange", "path": str(shuffled)}]}, out=tmp_path / "b"))
    assert sorted((r["id"], r["messages"][1]["content"]) for r in a) == \
        sorted((r["id"], r["messages"][1]["content"]) for r in b)


def test_html_to_text():
    assert text.html_to_text("<p>a &lt; b</p>\n<p>c<br>d</p>") == "a < b\n\nc\nd"
    assert text.html_to_text("<pre><code>x = 1</code></pre>") == "x = 1"
    # the items of one list stay together, under the line that introduces them
    html = "<p>Options:</p>\n<ul>\n<li>rest</li>\n<li>ice</li>\n</ul>\n<p>Then walk.</p>"
    assert text.html_to_text(html) == "Options:\n- rest\n- ice\n\nThen walk."


# --------------------------------------------------------------------------- Alpaca QA


def test_alpaca_qa_strips_boilerplate_and_keeps_medicine(build):
    result = build({"name": "hcm", "inputs": [
        {"builder": "alpaca_qa", "path": str(QA / "healthcaremagic_style.json"), "source": "hcm"}]})
    rows = _rows(result)
    raw = json.loads((QA / "healthcaremagic_style.json").read_text())
    assert result.steps[0].dropped == {"empty_answer": 1}  # greeting + "hope this helps" only
    assert len(rows) == len(raw) - 1
    answers = [_turns(r)["assistant"] for r in rows]
    joined = " ".join(answers)
    for phrase in ("Thanks for", "gone through your query", "Hope this helps", "Regards", "Chat Doctor",
                   "Welcome to", "icliniq", "Take care", "Feel free", "speedy recovery", "Dr. A. Verma"):
        assert phrase.lower() not in joined.lower(), phrase
    assert answers[0].startswith("The burning epigastric pain")
    assert "omeprazole 20 mg before breakfast for 4 weeks" in answers[0]
    assert answers[0].endswith("an endoscopy and an H. pylori test may be needed.")
    assert answers[2].endswith("once daily for a week during flares.")
    for row in rows:
        assert validate_row(row) == "conversational"
        assert row["messages"][0]["role"] == "system"
    assert [r["meta"]["locator"] for r in rows][:2] == ["line 2", "line 7"]


@pytest.mark.parametrize(("mode", "roles"), [("system", ["system", "user", "assistant"]),
                                             ("prepend", ["user", "assistant"]), ("drop", ["user", "assistant"])])
def test_alpaca_instruction_modes(build, tmp_path, mode, roles):
    src = tmp_path / "chatdoctor.jsonl"
    items = json.loads((QA / "chatdoctor5k_sample.json").read_text())[:5]
    src.write_text("".join(json.dumps(i) + "\n" for i in items))
    result = build({"name": "cd", "inputs": [{"builder": "alpaca_qa", "path": str(src), "instruction": mode}]})
    rows = _rows(result)
    assert len(rows) == 5
    for row, item in zip(rows, items, strict=True):
        assert [m["role"] for m in row["messages"]] == roles
        user = _turns(row)["user"]
        assert user.endswith(item["input"].strip())
        assert (item["instruction"] in user) == (mode == "prepend")


def test_json_stream_matches_json_load(tmp_path):
    """Items cut by the 64 KB read buffer decode the same as a whole-file json.load."""
    items = [{"instruction": "i", "input": f"question {n} " + "é" * (n % 700), "output": "x" * 900}
             for n in range(300)]
    f = tmp_path / "big.json"
    f.write_text(json.dumps(items, indent=2, ensure_ascii=False), encoding="utf-8")
    got = list(iter_json_values(f))
    assert [item.value for item in got] == items
    lines = f.read_text(encoding="utf-8").splitlines()
    for item in got[:50]:
        assert lines[item.line - 1].strip() == "{"


def test_boilerplate_on_long_answers_cleans_the_edges_and_whole_sentences():
    sentences = [f"Sentence {i} about metformin and hepatic glucose output." for i in range(60)]
    body = " ".join(sentences)
    text_in = f"Hi, thanks for your query. {body} Hope this helps. Regards, Dr. A. Kumar, MD"
    assert text.strip_boilerplate(text_in) == body
    # thank-you and gone-through sentences between the answer's sentences go too (the old
    # regex list's unanchored patterns, now sentence rules of the one YAML list)
    middle = " ".join([*sentences[:30], "Thanks for the question.", *sentences[30:45],
                       "I have gone through your history carefully.", *sentences[45:]])
    assert text.strip_boilerplate(f"Hello! {middle}") == body


def test_boilerplate_list_spares_medical_text():
    """On real ChatDoctor answers (no site boilerplate) the engine removes at most a greeting."""
    for item in json.loads((QA / "chatdoctor5k_sample.json").read_text()):
        raw = " ".join(item["output"].split())
        cleaned = text.strip_boilerplate(raw)
        assert len(cleaned) >= len(raw) - 50, (raw[:80], cleaned[:80])


# --------------------------------------------------------------------------- recipe + robustness


def test_example_recipe_builds(build):
    path = EXAMPLES / "recipes" / "qa_site.yaml"
    result = build(yaml.safe_load(path.read_text()), base_dir=path.parent)
    rows = _rows(result)
    assert result.totals["quarantined"] == 0 and len(rows) == result.totals["out"]
    for row in rows:
        assert validate_row(row) == "conversational"
    assert {r["meta"]["builder"] for r in rows} == {"medquad_xml", "stackexchange", "alpaca_qa", "table"}
    hcm = [r for r in rows if r["source"] == "healthcaremagic"]
    assert hcm and not any("thanks for" in _turns(r)["assistant"].lower() for r in hcm)


GOOD = {"medquad_xml": (QA / "medquad_xml" / "3_GHR_QA_0000001.xml", "xml", "doc.xml"),
        "stackexchange": (POSTS, "xml", "Posts.xml"),
        "alpaca_qa": (QA / "healthcaremagic_style.json", "json", "hcm.json")}


@pytest.mark.parametrize("builder", sorted(GOOD))
@robust_cases
def test_malformed_input(build, tmp_path, builder, case):
    good, kind, name = GOOD[builder]
    bad = tmp_path / name
    bad.write_bytes(bad_inputs(good.read_bytes(), kind)[case])
    got = check_robust_build(build, {"name": "bad", "inputs": [{"builder": builder, "path": str(bad)}]},
                             tmp_path / "out", case)
    assert "quarantine" in got, got
    entries = got["quarantine"]
    if case == "truncated" and builder == "alpaca_qa":
        assert "truncated" in entries[-1]["error"]
    assert entries, f"{builder}/{case}: nothing quarantined"
    if case == "empty":
        assert entries[0]["error"].startswith("the file is empty")
    if case == "huge_line" and builder == "alpaca_qa":
        assert "over the 8,388,608-character limit" in entries[0]["error"]
    assert all(e["file"].endswith(name) for e in entries)


def test_quarantine_is_an_item_not_an_exception():
    bad = list(iter_json_values(QA / "medquad_xml" / "3_GHR_QA_0000001.xml"))
    assert len(bad) == 1 and isinstance(bad[0], Quarantine) and "JSON array" in bad[0].error


# --------------------------------------------------------------------------- one boilerplate engine

def _answers(result) -> dict[tuple[str, str], str]:
    return {(r["meta"]["file"], r["meta"]["locator"]): _turns(r)["assistant"] for r in _rows(result)}


@pytest.mark.parametrize("builder", ["alpaca_qa", "stackexchange"])
def test_builder_cleaning_agrees_with_the_strip_boilerplate_step(build, tmp_path, builder):
    """``strip_boilerplate: true`` in a QA-site builder and the ``strip_boilerplate`` step on
    the same raw answers give the same text: both run meddata.text's one engine and list. Real
    data: the bundled ChatDoctor GenMedGPT-5k sample, the HealthCareMagic-style answers, and
    StackExchange posts."""
    if builder == "alpaca_qa":
        paths = [QA / "healthcaremagic_style.json", QA / "chatdoctor5k_sample.json"]
    else:
        paths = [POSTS]
    inputs = [{"builder": builder, "path": str(p), "source": f"s{i}"} for i, p in enumerate(paths)]
    cleaned = build({"name": "a", "inputs": inputs}, out=tmp_path / "a")
    raw = build({"name": "b", "inputs": [{**i, "strip_boilerplate": False} for i in inputs]}, out=tmp_path / "b")
    stepped = build({"name": "c", "inputs": [{**i, "strip_boilerplate": False} for i in inputs],
                     "steps": [{"strip_boilerplate": {"roles": ["assistant"]}}]}, out=tmp_path / "c")
    by_builder, by_step, before = _answers(cleaned), _answers(stepped), _answers(raw)
    assert by_builder == by_step
    changed = sum(by_step[k] != before[k] for k in by_step)
    assert changed > 0  # the engine did clean something, so agreement is not vacuous
    # rows the engine emptied are dropped either way, with the builder's or the step's reason
    emptied = sum(cleaned.steps[i].dropped.get("empty_answer", 0) for i in range(len(inputs))) - \
        sum(raw.steps[i].dropped.get("empty_answer", 0) for i in range(len(inputs)))
    assert emptied == stepped.steps[-1].dropped.get("empty_after_boilerplate", 0)
