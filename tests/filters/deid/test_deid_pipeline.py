"""The deid and phi_scan steps in real builds, the audit (no PHI in any file or log), and the CLI."""

from __future__ import annotations

import gzip
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from testutil import DATA, read_jsonl, write_jsonl

DEID = DATA / "deid"
SYNTHEA = DEID / "synthea_notes_phi.jsonl"


def _file_text(path: Path) -> str:
    """Everything a file holds, decoded: parquet through pyarrow (it compresses), gzip unpacked."""
    if path.suffix == ".parquet":
        return json.dumps(pq.read_table(path).to_pylist(), default=str)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return raw.decode("utf-8", errors="ignore")


def _leaks(root: Path, values: set[str]) -> list[tuple[str, str]]:
    hits = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        content = _file_text(path)
        for v in values:
            if v in content:
                hits.append((str(path.relative_to(root)), "<value withheld>"))
                break
    return hits


@pytest.mark.parametrize("strategy", ["surrogate", "mask"])
def test_build_leaves_no_phi_in_any_file_or_log(build, tmp_path, caplog, monkeypatch, strategy):
    monkeypatch.setenv("MEDDATA_DEID_KEY_TEST", "a-test-secret")
    rows = read_jsonl(SYNTHEA)
    phi = {v for r in rows for v in r["phi"] if len(v) >= 4}
    assert len(phi) > 100
    caplog.set_level(logging.DEBUG)
    result = build({
        "name": "deid-audit",
        "inputs": [{"builder": "table", "path": str(SYNTHEA), "source": "synthea", "phi_status": "raw",
                    "licence": "synthetic", "columns": {"id": "doc_id", "text": "text", "patient_id": "patient_id"}}],
        "steps": [{"deid": {"strategy": strategy, "key_env": "MEDDATA_DEID_KEY_TEST", "model": "off"}}],
        "output": {"formats": ["arrow", "parquet", "jsonl"]},
    }, out=tmp_path / "out")
    out_rows = read_jsonl(next((result.out_dir / "jsonl").rglob("*.jsonl")))
    assert len(out_rows) == len(rows)
    assert all(r["meta"]["phi_status"] == "deidentified" for r in out_rows)
    ann = json.loads(out_rows[0]["meta"]["annotations"])["deid"]
    assert ann["strategy"] == strategy and ann["phi"]["NAME"] >= 1 and ann["total"] == sum(ann["phi"].values())
    stats = json.loads(result.stats_path.read_text())
    deid_stats = next(s for s in stats["steps"] if s["name"] == "deid")
    assert deid_stats["counters"]["phi.NAME"] >= len(rows) and deid_stats["counters"]["phi.DATE"] >= len(rows)
    # the audit: every file the run wrote (checkpoints in .work included) and every log line
    files = [p for p in result.out_dir.rglob("*") if p.is_file()]
    assert any(".work" in p.parts for p in files)
    assert _leaks(result.out_dir, phi) == []
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert not [v for v in phi if v in logged]
    from meddata.funnel import format_funnel

    assert "PHI: NAME" in format_funnel(result.steps, result.totals)


def test_surrogates_stable_across_runs_with_key(build, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDDATA_DEID_KEY_TEST", "another-secret")
    recipe = {
        "name": "deid-stable",
        "inputs": [{"builder": "table", "path": str(SYNTHEA), "source": "synthea", "phi_status": "raw",
                    "columns": {"id": "doc_id", "text": "text", "patient_id": "patient_id"}}],
        "steps": [{"deid": {"strategy": "surrogate", "key_env": "MEDDATA_DEID_KEY_TEST", "model": "off",
                            "policy": "safe_harbor"}}],
        "output": {"formats": ["jsonl"], "card": False},
    }
    a = read_jsonl(next((build(recipe, out=tmp_path / "a").out_dir / "jsonl").rglob("*.jsonl")))
    b = read_jsonl(next((build(recipe, out=tmp_path / "b").out_dir / "jsonl").rglob("*.jsonl")))
    assert [r["text"] for r in a] == [r["text"] for r in b]


def test_phi_scan_flags_and_drops(build, tmp_path):
    src = write_jsonl(tmp_path / "gen.jsonl", [
        {"q": "What is the first-line treatment for hypertension?",
         "a": "Thiazide diuretics, ACE inhibitors, ARBs or calcium channel blockers."},
        {"q": "Summarize the note.", "a": "Mr. Okafor was seen by Dr. Brennan on 07/22/2019; call (617) 555-1234."},
        {"q": "Summarize the masked note.", "a": "[NAME] was seen by Dr. [NAME] on [DATE]."},
    ])
    for action, kept in (("flag", 3), ("drop", 2)):
        result = build({
            "name": f"scan-{action}",
            "inputs": [{"builder": "table", "path": str(src), "columns": {"user": "q", "assistant": "a"}}],
            "steps": [{"phi_scan": {"action": action, "model": "off"}}],
            "output": {"formats": ["jsonl"], "card": False},
        }, out=tmp_path / action)
        rows = read_jsonl(next((result.out_dir / "jsonl").rglob("*.jsonl")))
        assert len(rows) == kept
        flags = {r["messages"][0]["content"]: json.loads(r["meta"]["annotations"])["phi_scan"] for r in rows}
        assert flags["What is the first-line treatment for hypertension?"]["total"] == 0
        assert flags["Summarize the masked note."]["total"] == 0
        step = result.steps[-1]
        if action == "drop":
            assert step.dropped == {"phi_detected": 1}
        else:
            assert flags["Summarize the note."]["flagged"] and flags["Summarize the note."]["phi"]["NAME"] >= 2


def test_bad_params_are_rejected():
    from meddata.filters.deid.steps import Deid, PhiScan

    with pytest.raises(ValueError, match="strategy"):
        Deid({"strategy": "shred"})
    with pytest.raises(ValueError, match="unknown PHI type"):
        PhiScan({"types": ["NAMES"]})


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "meddata.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


def test_cli_detect_eval_redact(tmp_path):
    gold = DEID / "clinical_gold.jsonl"
    pred = tmp_path / "pred.jsonl"
    inp = write_jsonl(tmp_path / "in.jsonl", [{"id": r["id"], "text": r["text"]} for r in read_jsonl(gold)[:20]])
    r = _cli("deid", "detect", str(inp), "--out", str(pred), "--model", "off")
    assert r.returncode == 0, r.stderr
    preds = read_jsonl(pred)
    texts = {x["id"]: x["text"] for x in read_jsonl(inp)}
    assert len(preds) == 20 and all(0 <= s["start"] < s["end"] <= len(texts[p["id"]]) for p in preds for s in p["spans"])
    subset = write_jsonl(tmp_path / "gold.jsonl", read_jsonl(gold)[:20])
    r = _cli("deid", "eval", "--gold", str(subset), "--pred", str(pred), "--json", str(tmp_path / "s.json"))
    assert r.returncode == 0, r.stderr
    assert "overall" in r.stdout and "NAME" in r.stdout and "strict" in r.stdout
    scores = json.loads((tmp_path / "s.json").read_text())
    assert scores["lenient"]["recall"] >= 0.95
    out = tmp_path / "red.jsonl"
    r = _cli("deid", "redact", str(inp), "--out", str(out), "--strategy", "mask", "--model", "off")
    assert r.returncode == 0, r.stderr
    red = read_jsonl(out)
    assert "[NAME]" in red[0]["text"] and red[0]["phi_counts"]["NAME"] >= 1
    # bad input: a clear one-line error naming file, line and field, no value quoted
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1, "text": "ok"}\n{"id": 2, "body": "Mr. Secretname"}\n')
    r = _cli("deid", "detect", str(bad), "--out", str(tmp_path / "x.jsonl"), "--model", "off")
    assert r.returncode == 2 and "bad.jsonl:2" in r.stderr and "'text'" in r.stderr
    assert "Secretname" not in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("verb", ["detect", "eval"])
def test_cli_an_empty_input_is_an_error_not_a_perfect_score(tmp_path, verb):
    """An empty (or misnamed, truncated-to-nothing) file scored recall 1.000 / wrote 0 rows, exit 0."""
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    args = ([str(empty), "--out", str(tmp_path / "x.jsonl")] if verb == "detect" else ["--gold", str(empty)])
    r = _cli("deid", verb, *args, "--model", "off")
    assert r.returncode == 2 and "empty.jsonl: no rows" in r.stderr and "Traceback" not in r.stderr
    assert "1.000" not in r.stdout
