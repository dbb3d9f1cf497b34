"""``meddata report``: a self-contained HTML page with every chart, no raw PHI, and it renders
in a real browser (headless Chromium screenshot)."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from generators_testkit import llms
from llm_server import LLMServer
from PIL import Image
from publish_testkit import CHATDOCTOR, DEID, MEDQUAD, OPENSTAX, SYNTHEA, synthea_notes, synthea_phi
from testutil import read_jsonl

from meddata.llm.rubric import CRITERIA
from meddata.publish.report import write_report

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium; installed with apt-get on a fresh (root) machine when missing."""
    found = next((shutil.which(n) for n in CHROMIUM_NAMES if shutil.which(n)), None)
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("chromium is not installed and this user cannot apt-get install it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
        assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}"
    found = shutil.which("chromium")
    assert found, "apt-get installed chromium but it is not on PATH"
    return found


@pytest.fixture(scope="module")
def full_build(tmp_path_factory):
    """Raw notes de-identified, mixed with up-sampling, duplicates removed, judged by an LLM
    (the local OpenAI-protocol server)."""
    from meddata import publish, recipe

    tmp = tmp_path_factory.mktemp("report")
    server = LLMServer().start()
    try:
        rec = recipe.from_dict({
            "name": "report-full",
            "llms": llms(server.url, tmp),
            "inputs": [SYNTHEA, MEDQUAD, CHATDOCTOR],
            "steps": [
                DEID,
                {"mix": {"counts": {"synthea_notes": 12, "medquad": 30, "chatdoctor": 60}}},
                "exact_dedup",
                {"judge": {"llm": "local", "mode": "annotate"}},
            ],
        }, source="report.yaml")
        return publish.build(rec, tmp / "out")
    finally:
        server.stop()


@pytest.fixture(scope="module")
def full_report(full_build, tmp_path_factory) -> Path:
    return write_report(full_build.out_dir, tmp_path_factory.mktemp("html") / "report.html")


def _images(html: str) -> list[Image.Image]:
    return [Image.open(io.BytesIO(base64.b64decode(b64)))
            for b64 in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)]


def test_report_is_self_contained_with_every_chart(full_build, full_report):
    html = full_report.read_text(encoding="utf-8")
    # nothing is fetched: no external scripts, styles, fonts or images
    assert not re.search(r'(src|href)="(https?:)?//', html) and "<script" not in html and "<link" not in html
    images = _images(html)
    # funnel, sources, 2 x length, PHI, dedup clusters, one judge histogram per criterion + overall
    assert len(images) == 6 + len(CRITERIA) + 1
    assert all(img.format == "PNG" and img.width > 300 for img in images)
    for heading in ("Funnel", "Source mix", "Length distributions", "PHI found by type", "Duplicate clusters",
                    "Judge scores", "Sample rows per source"):
        assert f"<h2>{heading}</h2>" in html
    mix = next(s for s in full_build.steps if s.name == "mix")
    dedup = next(s for s in full_build.steps if s.name == "exact_dedup")
    assert mix.created == 20
    # every up-sampled copy repeats its original: 20 clusters of 2, one copy of each dropped
    clusters = dedup.report["clusters"]
    assert dedup.dropped == {"exact_duplicate": 20} and len(clusters) == 20
    assert {len(c["members"]) for c in clusters} == {2}
    assert f"{dedup.dropped['exact_duplicate']}" in html and "exact_duplicate" in html
    assert f"Step {dedup.index} exact_dedup: 20 clusters holding {sum(len(c['members']) for c in clusters)} rows." in html
    assert re.search(r"<td>chatdoctor</td><td class=\"n\">40</td><td class=\"n\">60</td>", html)
    # PHI by type: the deid step's counts
    deid = next(s for s in full_build.steps if s.name == "deid")
    assert deid.counters["phi.NAME"] > 0 and deid.counters["phi.SSN"] == 12
    # judge histograms: one per criterion and the overall score, over the judged rows
    rows = read_jsonl(full_build.out_dir / "jsonl" / "train.jsonl")
    judged = [json.loads(r["meta"]["annotations"])["judge"] for r in rows if '"judge"' in r["meta"]["annotations"]]
    assert len(judged) == 70  # 30 MedQuAD + 40 distinct ChatDoctor conversations; the notes have no answer
    for criterion in CRITERIA:
        values = [j["scores"][criterion] for j in judged]
        assert f"judge.{criterion}: 70 rows, mean {sum(values) / 70:.2f}" in html
    assert f"judge.overall: 70 rows, mean {sum(j['overall'] for j in judged) / 70:.2f}" in html
    assert "judge.accuracy" in html and "judge.safety" in html
    # de-identified rows may be shown; the patients' PHI never is
    assert "<h3>synthea_notes</h3>" in html and "[NAME]" in html
    for value in synthea_phi():
        assert value not in html


def test_card_of_the_build_shows_phi_clusters_and_judge_histograms(full_build):
    """The same run's README.md: what deid replaced, the dedup clusters, the judge's scores."""
    card = (full_build.out_dir / "README.md").read_text(encoding="utf-8")
    deid = next(s for s in full_build.steps if s.name == "deid")
    by_type = sorted(((k[4:], v) for k, v in deid.counters.items() if k.startswith("phi.")), key=lambda kv: -kv[1])
    assert "PHI spans found and replaced, by type: " + ", ".join(f"{k} {v:,}" for k, v in by_type) + "." in card
    dedup = next(s for s in full_build.steps if s.name == "exact_dedup")
    assert (f"Step {dedup.index} `exact_dedup` found 20 clusters of duplicates holding 40 rows and kept one row of "
            "each (`keep: first`); dropped exact_duplicate 20.") in card and "| 2 | 20 |" in card
    judge = next(s for s in full_build.steps if s.name == "judge")
    assert f"Step {judge.index} `judge` had an LLM grade 70 answers 1-5" in card
    rows = read_jsonl(full_build.out_dir / "jsonl" / "train.jsonl")
    judged = [json.loads(r["meta"]["annotations"])["judge"] for r in rows if '"judge"' in r["meta"]["annotations"]]
    for criterion in CRITERIA:
        counts = Counter(j["scores"][criterion] for j in judged)
        mean = sum(k * v for k, v in counts.items()) / len(judged)
        per_score = " · ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
        assert f"| judge.{criterion} | 70 | {mean:.2f} | {per_score} |" in card
    overall = [j["overall"] for j in judged]
    assert f"| judge.overall | 70 | {sum(overall) / 70:.2f} | {min(overall):g} to {max(overall):g} |" in card
    for value in synthea_phi():
        assert value not in card


def test_report_and_card_carry_the_same_warnings(build):
    """Raw rows, a non-commercial and a data-use-agreement licence: the report warns about each,
    in the card's words (the report once left restricted licences out)."""
    restricted = {**MEDQUAD, "source": "physionet_qa", "licence": "PhysioNet-DUA"}
    result = build({"name": "report-warnings", "inputs": [SYNTHEA, OPENSTAX, restricted]})
    html = write_report(result.out_dir).read_text(encoding="utf-8")
    warns = [w.replace("&#39;", "'").replace("&amp;", "&")
             for w in re.findall(r'<div class="warn">(.*?)</div>', html, re.S)]
    card = (result.out_dir / "README.md").read_text(encoding="utf-8")
    assert [w.split(":", 1)[0] for w in warns] == ["Raw patient data", "Non-commercial licence",
                                                   "Restricted licence"]
    assert "PhysioNet-DUA" in warns[2] and "openstax (CC-BY-NC-SA-4.0)" in warns[1]
    for w in warns:
        title, body = w.split(": ", 1)
        assert f"> **{title}:** {body}" in card


def test_raw_rows_are_never_sampled(build, tmp_path):
    result = build({"name": "report-raw", "inputs": [SYNTHEA, MEDQUAD]})
    html = write_report(result.out_dir).read_text(encoding="utf-8")
    assert (result.out_dir / "report.html").is_file()
    assert "12 rows are raw patient data" in html
    assert "synthea_notes: 12 sampled rows withheld" in html and "<h3>synthea_notes</h3>" not in html
    for note in synthea_notes():
        for line in note["text"].splitlines():
            if len(line.strip()) >= 25:
                assert line.strip()[:25] not in html
    assert "<h3>medquad</h3>" in html  # other sources still get samples


def test_cli_writes_the_report(build, tmp_path, capsys):
    from meddata.cli import main

    result = build({"name": "report-cli", "inputs": [MEDQUAD]})
    assert main(["report", str(result.out_dir), "--out", str(tmp_path / "x.html")]) == 0
    assert f"report: {tmp_path / 'x.html'}" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    assert "not a meddata build folder" in capsys.readouterr().err


def test_report_renders_in_headless_chromium(full_report, chromium, tmp_path):
    html = full_report
    shot = tmp_path / "report.png"
    proc = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         f"--screenshot={shot}", "--window-size=1280,2000", html.resolve().as_uri()],
        capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    assert shot.stat().st_size > 30_000
    img = Image.open(shot).convert("RGB")
    assert img.size == (1280, 2000)
    colours = img.getcolors(maxcolors=1_000_000)
    assert colours is not None and len(colours) > 200  # text, header, charts: far from a blank page
    # the dark header band and the chart blue are both on screen
    pixels = {rgb for _, rgb in img.resize((320, 500)).getcolors(maxcolors=1_000_000)}
    assert any(abs(r - 0x1F) < 12 and abs(g - 0x3A) < 12 and abs(b - 0x5F) < 12 for r, g, b in pixels)
    assert any(abs(r - 0x2F) < 20 and abs(g - 0x6D) < 20 and abs(b - 0xB3) < 20 for r, g, b in pixels)


def test_report_handles_a_build_without_rows(build, tmp_path):
    result = build({"name": "report-empty", "inputs": [MEDQUAD], "steps": [{"length_filter": {"min_chars": 10**6}}]})
    html = write_report(result.out_dir).read_text(encoding="utf-8")
    assert result.rows_out == 0 and "too_short 60" in html
    assert Path(result.out_dir / "report.html").stat().st_size > 1000
