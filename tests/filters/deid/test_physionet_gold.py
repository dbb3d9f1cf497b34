"""The PhysioNet deid-corpus converter writes gold that 'meddata deid eval' scores."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "benchmarks" / "physionet_deid_gold.py"
BODY = "Pt seen by dr healey at gh.\nStable overnight.\n"


def _corpus(tmp_path: Path, phi: str) -> tuple[Path, Path]:
    text = tmp_path / "id.text"
    text.write_text(f"START_OF_RECORD=1||||1||||\n{BODY}||||END_OF_RECORD\n\n"
                    f"START_OF_RECORD=1||||2||||\nNo PHI here.\n||||END_OF_RECORD\n")
    offsets = tmp_path / "id.phi"
    offsets.write_text(phi)
    return text, offsets


def test_converts_offsets_and_scores(tmp_path):
    start = BODY.index("healey")
    text, phi = _corpus(tmp_path, f"\nPatient 1\tNote 1\n{start}\t{start}\t{start + 6}\n"
                                  f"{BODY.index('gh')}\t{BODY.index('gh')}\t{BODY.index('gh') + 2}\n")
    out = tmp_path / "gold.jsonl"
    run = subprocess.run([sys.executable, str(SCRIPT), str(text), str(phi), "--out", str(out)],
                         capture_output=True, text=True, check=True)
    assert "1 notes" in run.stdout and "1 notes without offsets skipped" in run.stdout
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [BODY[s["start"]:s["end"]] for s in rows[0]["spans"]] == ["healey", "gh"]
    scored = subprocess.run([sys.executable, "-m", "meddata", "deid", "eval", "--gold", str(out), "--model", "off"],
                            capture_output=True, text=True, check=True)
    overall = next(line for line in scored.stdout.splitlines() if line.startswith("overall"))
    assert float(overall.split()[1]) == 1.0  # both found: "dr healey", "at gh"


def test_bad_offset_line_names_file_and_line(tmp_path):
    text, phi = _corpus(tmp_path, "Patient 1\tNote 1\n12 x 14\n")
    run = subprocess.run([sys.executable, str(SCRIPT), str(text), str(phi), "--out", str(tmp_path / "g.jsonl")],
                         capture_output=True, text=True)
    assert run.returncode != 0 and f"{phi}:2:" in run.stderr
