"""``meddata report``: a self-contained HTML page with every chart, no raw PHI, and it renders
in a real browser (headless Chromium screenshot)."""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import subprocess
from pathlib import Path

import publish_steps
import pytest
from PIL import Image
from publish_steps import CHATDOCTOR, MEDQUAD, SYNTHEA

from meddata.report import write_report

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
    """Raw notes de-identified, mixed with up-sampling, duplicates removed, judged."""
    from meddata import pipeline, recipe

    rec = recipe.from_dict({
        "name": "report-full",
        "inputs": [SYNTHEA, MEDQUAD, CHATDOCTOR],
        "steps": [
            {"deid_regex_demo": {"gold_names": publish_steps.synthea_names()}},
            {"mix": {"counts": {"synthea_notes": 12, "medquad": 30, "chatdoctor": 60}}},
            "exact_dedup_demo",
            "judge_demo",
        ],
    }, source="report.yaml")
    return pipeline.run(rec, tmp_path_factory.mktemp("report") / "out")


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
    # funnel, sources, 2 x length, PHI, dedup clusters, 2 judge histograms
    assert len(images) == 8
    assert all(img.format == "PNG" and img.width > 300 for img in images)
    for heading in ("Funnel", "Source mix", "Length distributions", "PHI found by type", "Duplicate clusters",
                    "Judge scores", "Sample rows per source"):
        assert f"<h2>{heading}</h2>" in html
    mix = next(s for s in full_build.steps if s.name == "mix")
    dedup = next(s for s in full_build.steps if s.name == "exact_dedup_demo")
    assert f"{dedup.dropped['exact_duplicate']}" in html and "exact_duplicate" in html
    assert f"clusters holding {sum(int(k) * v for k, v in dedup.report['cluster_sizes'].items())} rows" in html
    assert re.search(r"<td>chatdoctor</td><td class=\"n\">40</td><td class=\"n\">60</td>", html)
    assert mix.created == 20
    assert "judge.accuracy" in html and "judge.safety" in html
    # de-identified rows may be shown; their original names never are
    assert "<h3>synthea_notes</h3>" in html and "[NAME]" in html
    for name in publish_steps.synthea_names():
        assert name not in html


def test_raw_rows_are_never_sampled(build, tmp_path):
    result = build({"name": "report-raw", "inputs": [SYNTHEA, MEDQUAD]})
    html = write_report(result.out_dir).read_text(encoding="utf-8")
    assert (result.out_dir / "report.html").is_file()
    assert "12 rows are raw patient data" in html
    assert "synthea_notes: 12 sampled rows withheld" in html and "<h3>synthea_notes</h3>" not in html
    for note in publish_steps.synthea_notes():
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
