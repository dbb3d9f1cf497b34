"""Damaged input files as users meet them: a binary file is one quarantine entry that says
so, and a truncated JSON array keeps the items before the break (issue 12, item 10)."""

from __future__ import annotations

import gzip
import json

import pytest
from badinput import assert_counts_add_up
from builder_testkit import one, quarantine_of, rows_of
from testutil import DATA, EXAMPLES

CHATDOCTOR = DATA / "qa" / "chatdoctor5k_sample.json"
MEDQUAD = EXAMPLES / "data" / "medquad_sample.jsonl"
QA_COLUMNS = {"user": "input", "assistant": "output"}


@pytest.mark.parametrize("kind,fmt,expected", [
    ("gzip", "jsonl", "gzip-compressed (name it *.gz)"),
    ("gzip", "csv", "gzip-compressed (name it *.gz)"),
    ("gzip", "json", "gzip-compressed (name it *.gz)"),
    ("utf16", "jsonl", "UTF-16 text (set encoding: utf-16)"),
    ("random", "jsonl", "a binary file, not text"),
])
def test_a_binary_file_is_one_entry_that_says_what_it_is(build, tmp_path, kind, fmt, expected):
    import random

    text = MEDQUAD.read_bytes()
    data = {"gzip": gzip.compress(text), "utf16": text.decode("utf-8").encode("utf-16"),
            "random": random.Random(0).randbytes(64 * 1024)}[kind]
    path = tmp_path / f"notes.{fmt}"
    path.write_bytes(data)
    result = build(one("table", path, columns={"text": "answer"}))
    (entry,) = quarantine_of(result)
    assert entry["error"] == f"the file is {expected}; nothing was read from it" and entry["locator"] == "file"
    assert "latin-1" not in entry["error"]
    assert_counts_add_up(result)


@pytest.mark.parametrize("keep", [0, 1, 3])
def test_a_truncated_json_array_keeps_the_items_before_the_break(build, tmp_path, keep):
    items = json.loads(CHATDOCTOR.read_text(encoding="utf-8"))
    assert len(items) > keep + 1
    whole = json.dumps(items[:keep + 1], indent=2, ensure_ascii=False)
    cut = whole.rindex(json.dumps(items[keep]["output"], ensure_ascii=False)[:40])  # inside the next item
    path = tmp_path / "chatdoctor.json"
    path.write_text(whole[:cut], encoding="utf-8")
    result = build(one("table", path, columns=QA_COLUMNS))
    rows = rows_of(result)
    assert [r["messages"][-1]["content"] for r in rows] == [it["output"] for it in items[:keep]]
    (entry,) = quarantine_of(result)
    assert f"invalid or truncated JSON in item {keep}" in entry["error"]
    assert f"the {keep} item(s) before it were read" in entry["error"]
    assert entry["locator"] == f"line {whole[:cut].count(chr(10)) + 1}"
    assert_counts_add_up(result)


def test_content_after_a_complete_array_is_quarantined_after_its_items(build, tmp_path):
    items = json.loads(CHATDOCTOR.read_text(encoding="utf-8"))
    path = tmp_path / "chatdoctor.json"
    path.write_text(json.dumps(items) + "\n}", encoding="utf-8")
    result = build(one("table", path, columns=QA_COLUMNS))
    assert len(rows_of(result)) == len(items)
    (entry,) = quarantine_of(result)
    assert "unexpected content after the closing ']'" in entry["error"] and entry["locator"] == "line 2"


# -- the one streaming JSON reader (meddata.io.iter_json_values) --------------------------------------


def test_a_keyed_json_object_streams_and_a_break_keeps_the_keys_before_it(tmp_path):
    """PubMedQA's ori_pqal.json is an object keyed by PMID; it streams like an array, and a
    truncated file keeps every complete entry before the break, naming the line."""
    from meddata.io import iter_json_array

    entries = {str(pmid): {"QUESTION": f"Question {pmid}?", "final_decision": "yes"} for pmid in range(100, 105)}
    whole = json.dumps(entries, indent=1)
    cut = whole.index('"103"')
    path = tmp_path / "ori_pqal.json"
    truncated = whole[:cut + 20]  # inside entry 103
    path.write_text(truncated, encoding="utf-8")
    got = list(iter_json_array(path))
    assert [loc for loc, _ in got[:-1]] == ["key 100", "key 101", "key 102"]
    assert got[0][1] == {"_key": "100", **entries["100"]}
    bad = got[-1]
    assert "invalid or truncated JSON in item 3" in bad.error and "the 3 item(s) before it were read" in bad.error
    assert bad.locator == f"line {truncated.count(chr(10)) + 1}"  # where the file breaks off


def test_alpaca_locators_are_the_line_an_item_starts_on(build, tmp_path):
    items = json.loads(CHATDOCTOR.read_text(encoding="utf-8"))[:4]
    whole = json.dumps(items, indent=2, ensure_ascii=False)
    path = tmp_path / "cd.json"
    path.write_text(whole, encoding="utf-8")
    result = build(one("alpaca_qa", path, strip_boilerplate=False))
    rows = rows_of(result)
    lines = whole.split("\n")
    assert len(rows) == 4
    for row, item in zip(rows, items, strict=True):
        n = int(row["meta"]["locator"].removeprefix("line "))
        assert lines[n - 1].strip() == "{" and json.dumps(item["output"], ensure_ascii=False) in "\n".join(lines[n:])
    assert_counts_add_up(result)
