"""``meddata dedup`` as a user runs it: subprocesses on real {id, text} JSONL files."""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from testutil import DATA, ROOT, read_jsonl, write_jsonl

from meddata.cli import main

PLANTED = DATA / "dedup" / "planted_neardup.jsonl.gz"


def run(*args: str) -> subprocess.CompletedProcess:
    """The command in a fresh interpreter, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "meddata.cli", "dedup", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def call(capsys, *args: str) -> tuple[int, str, str]:
    """The same entry point in this process (no interpreter start-up): exit code, stdout, stderr."""
    code = main(["dedup", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> tuple[Path, list[dict]]:
    with gzip.open(PLANTED, "rt", encoding="utf-8") as fh:
        docs = [json.loads(line) for line in fh][:600]
    path = tmp_path_factory.mktemp("cli") / "in.jsonl"
    with path.open("w", encoding="utf-8") as fh:  # blank lines are allowed and skipped
        for i, d in enumerate(docs):
            fh.write(json.dumps({"id": d["id"], "text": d["text"], "family": d["family"]}) + "\n")
            if i == 10:
                fh.write("\n")
    return path, docs


def test_dedup_writes_kept_rows_and_clusters(planted, tmp_path):
    src, docs = planted
    out = run(str(src), "--out", str(tmp_path / "kept.jsonl"), "--clusters", str(tmp_path / "clusters.jsonl"))
    assert out.returncode == 0, out.stderr
    clusters = read_jsonl(tmp_path / "clusters.jsonl")
    kept = read_jsonl(tmp_path / "kept.jsonl")
    family = {d["id"]: d["family"] for d in docs}
    assert clusters and all(set(c) == {"members", "kept"} and len(c["members"]) >= 2 for c in clusters)
    assert all(len({family[m] for m in c["members"]}) == 1 for c in clusters)
    dropped = {m for c in clusters for m in c["members"] if m != c["kept"]}
    assert [r["id"] for r in kept] == [d["id"] for d in docs if d["id"] not in dropped]  # input order
    assert kept[0] == {"id": docs[0]["id"], "text": docs[0]["text"], "family": docs[0]["family"]}  # unchanged
    assert len({family[r["id"]] for r in kept}) == len({d["family"] for d in docs})
    assert f"-> kept {len(kept):,}" in out.stdout


def test_options_change_the_result(planted, tmp_path, capsys):
    src, _ = planted
    base = ["--out", str(tmp_path / "k.jsonl"), "--clusters", str(tmp_path / "c.jsonl")]
    assert call(capsys, str(src), *base, "--threshold", "0.95")[0] == 0
    strict = len(read_jsonl(tmp_path / "c.jsonl"))
    assert call(capsys, str(src), *base, "--threshold", "0.8", "--ngram", "3", "--num-perm", "64")[0] == 0
    loose = len(read_jsonl(tmp_path / "c.jsonl"))
    assert loose > strict
    assert call(capsys, str(src), *base, "--unit", "char", "--ngram", "9", "--keep", "longest")[0] == 0
    clusters = read_jsonl(tmp_path / "c.jsonl")
    text = {r["id"]: r["text"] for r in read_jsonl(src)}
    assert clusters and all(len(text[c["kept"]]) == max(len(text[m]) for m in c["members"]) for c in clusters)


def test_other_field_names(tmp_path, capsys):
    rows = [{"doc": i, "body": "the same sentence about renal failure and dialysis access today"} for i in range(3)]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    code, _, err = call(capsys, str(src), "--out", str(tmp_path / "k.jsonl"), "--clusters", str(tmp_path / "c.jsonl"),
                        "--id-field", "doc", "--text-field", "body")
    assert code == 0, err
    assert read_jsonl(tmp_path / "c.jsonl") == [{"members": [0, 1, 2], "kept": 0}]


@pytest.mark.parametrize("lines, message", [
    (['{"id": 1, "text": "ok"}', '{"id": 2, "text": '], r"in\.jsonl:2: invalid JSON"),
    (['{"id": 1, "text": "ok"}', '["a list"]'], r"in\.jsonl:2: expected a JSON object"),
    (['{"id": 1, "body": "ok"}'], r"in\.jsonl:1: field 'text' is missing"),
    (['{"id": 1, "text": 5}'], r"in\.jsonl:1: field 'text' must be a string"),
    (['{"text": "x"}'], r"in\.jsonl:1: field 'id' is missing"),
    (['{"id": 1, "text": "a"}', '{"id": 1, "text": "b"}'], r"in\.jsonl:2: .*repeats the id on line 1"),
])
def test_malformed_input_names_file_and_line(tmp_path, capsys, lines, message):
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, _, err = call(capsys, str(src), "--out", str(tmp_path / "k.jsonl"), "--clusters", str(tmp_path / "c.jsonl"))
    assert code == 2
    assert err.startswith("meddata dedup: error:") and len(err.strip().splitlines()) == 1
    assert re.search(message, err), err
    assert not (tmp_path / "k.jsonl").exists()


def test_a_malformed_line_in_a_real_run(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": 1, "text": "fine"}\n{"id": 2, "text": "broken\n', encoding="utf-8")
    out = run(str(src), "--out", str(tmp_path / "k.jsonl"), "--clusters", str(tmp_path / "c.jsonl"))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"{src}:2: invalid JSON" in out.stderr


def test_refuses_to_overwrite_its_input(planted, capsys):
    src, _ = planted
    code, _, err = call(capsys, str(src), "--out", str(src), "--clusters", str(src.with_name("c.jsonl")))
    assert code == 2 and "different files" in err
    assert call(capsys, str(src.with_name("missing.jsonl")), "--out", "k", "--clusters", "c")[0] == 2
