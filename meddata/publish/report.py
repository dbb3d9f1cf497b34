"""``meddata report``: one self-contained HTML page that explains a build.

Charts are matplotlib PNGs embedded as base64 (Agg backend, nothing fetched when the page
opens, so it can be mailed or archived): the funnel per step, length distributions per
source and per TRL type, the source mix per split, PHI counts by type, dedup cluster sizes,
judge-score histograms, plus a few sample rows per source. Sample rows never come from rows
whose ``meta.phi_status`` is ``raw``; everything else in the page is counts.

Where numbers come from: the funnel, PHI counts (the ``phi.TYPE`` counters of the ``deid``
steps; a later ``phi_scan``'s flagged spans are shown apart), mixture and dedup clusters
(the ``clusters`` a dedup step reports) from ``stats.json``; lengths, judge scores and
samples from a seeded sample of the rows (judge scores: ``meta.annotations["judge"]``, one
histogram per rubric criterion plus the overall score; see :func:`meddata.publish.buildinfo.judge_scores`).
"""

from __future__ import annotations

import base64
import io
import json
import random
from collections import Counter, defaultdict
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from meddata.publish.buildinfo import BuildInfo, judge_scores
from meddata.publish.cautions import build_warnings
from meddata.records import MESSAGE_COLUMNS, detect_type, text_of

SAMPLE_ROWS = 20_000  # rows per split read for lengths and judge scores
SAMPLES_PER_SOURCE = 3
SAMPLE_CHARS = 600
PALETTE = ["#2f6db3", "#e07b39", "#3a9d5d", "#c44e52", "#8172b2", "#937860", "#da8bc3", "#8c8c8c",
           "#ccb974", "#64b5cd"]


# -- charts ------------------------------------------------------------------------------------
def _figure(width: float = 9.0, height: float = 3.6):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height), dpi=100)
    ax.spines[["top", "right"]].set_visible(False)
    return fig, ax


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def funnel_chart(steps: list[dict[str, Any]]) -> str:
    labels = [f"{s['index']} {s['name']}" for s in steps]
    fig, ax = _figure(height=max(2.4, 0.42 * len(steps) + 1))
    y = list(range(len(steps)))[::-1]
    ax.barh(y, [s.get("rows_in", 0) for s in steps], color="#d6e2f0", label="rows in")
    ax.barh(y, [s.get("rows_out", 0) for s in steps], height=0.5, color=PALETTE[0], label="rows out")
    for yi, s in zip(y, steps):
        ax.text(s.get("rows_out", 0), yi, f" {s.get('rows_out', 0):,}", va="center", fontsize=8)
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlabel("rows")
    ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=2, fontsize=8, frameon=False)
    ax.set_title("Rows in and out of every step", loc="left")
    return _png(fig)


def stacked_bars(title: str, data: Mapping[str, Mapping[str, int]], xlabel: str = "rows") -> str:
    """Horizontal bars per category, stacked by series (e.g. source x split)."""
    cats = sorted(data, key=lambda c: -sum(data[c].values()))
    series = sorted({s for per in data.values() for s in per})
    fig, ax = _figure(height=max(2.2, 0.4 * len(cats) + 1))
    y = list(range(len(cats)))[::-1]
    left = [0] * len(cats)
    for k, s in enumerate(series):
        vals = [data[c].get(s, 0) for c in cats]
        ax.barh(y, vals, left=left, color=PALETTE[k % len(PALETTE)], label=s)
        left = [a + b for a, b in zip(left, vals)]
    for yi, total in zip(y, left):
        ax.text(total, yi, f" {total:,}", va="center", fontsize=8)
    ax.set_yticks(y, cats, fontsize=8)
    ax.set_xlabel(xlabel)
    if len(series) > 1:
        ax.legend(fontsize=8, frameon=False, loc="lower right")
    ax.set_title(title)
    return _png(fig)


def length_chart(title: str, lengths: Mapping[str, list[int]]) -> str:
    import numpy as np

    fig, ax = _figure()
    values = [v for vs in lengths.values() for v in vs if v > 0]
    lo, hi = (max(1, min(values)), max(values)) if values else (1, 10)
    bins = np.logspace(np.log10(lo), np.log10(max(hi, lo * 1.5)), 40)
    for k, (name, vals) in enumerate(sorted(lengths.items(), key=lambda kv: -len(kv[1]))):
        ax.hist([v for v in vals if v > 0], bins=bins, histtype="step", linewidth=1.6,
                color=PALETTE[k % len(PALETTE)], label=f"{name} (median {int(np.median(vals)) if vals else 0:,})")
    ax.set_xscale("log")
    ax.set_xlabel("characters per row (log scale)")
    ax.set_ylabel("rows")
    ax.legend(fontsize=8, frameon=False)
    ax.set_title(title)
    return _png(fig)


def histogram_chart(title: str, values: list[float], xlabel: str) -> str:
    fig, ax = _figure(width=4.4, height=3.0)
    distinct = sorted(set(values))
    if len(distinct) <= 12 and all(float(v).is_integer() for v in distinct):
        counts = Counter(values)
        ax.bar([str(int(v)) for v in distinct], [counts[v] for v in distinct], color=PALETTE[2])
    else:
        ax.hist(values, bins=20, color=PALETTE[2])
    ax.set_xlabel(xlabel)
    ax.set_ylabel("rows")
    ax.set_title(title, fontsize=10)
    return _png(fig)


def bar_chart(title: str, counts: Mapping[Any, int], xlabel: str, color: str = PALETTE[3]) -> str:
    items = list(counts.items())
    fig, ax = _figure(height=max(2.2, 0.36 * len(items) + 1))
    y = list(range(len(items)))[::-1]
    ax.barh(y, [v for _, v in items], color=color)
    for yi, (_, v) in zip(y, items):
        ax.text(v, yi, f" {v:,}", va="center", fontsize=8)
    ax.set_yticks(y, [str(k) for k, _ in items], fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    return _png(fig)


# -- data gathering ------------------------------------------------------------------------------
def _sample_indices(n: int, k: int, seed: int) -> list[int]:
    return sorted(random.Random(seed).sample(range(n), k)) if n > k else list(range(n))


def _render_row(row: Mapping[str, Any]) -> list[dict[str, str]]:
    """A row as (label, text) parts for display, each cut to SAMPLE_CHARS."""
    parts: list[dict[str, str]] = []

    def add(label: str, text: str | None) -> None:
        if text:
            cut = text if len(text) <= SAMPLE_CHARS else text[:SAMPLE_CHARS] + " …"
            parts.append({"label": label, "text": cut})

    for col in MESSAGE_COLUMNS:
        for m in row.get(col) or []:
            add(f"{col}/{m['role']}" if col != "messages" else m["role"], m.get("content"))
    add("text", row.get("text"))
    add("question", row.get("question"))
    for o in row.get("options") or []:
        add(f"option {o.get('label')}", o.get("text"))
    add("answer", row.get("answer"))
    return parts


class ReportData:
    """Everything the template shows, computed from a build folder."""

    def __init__(self, info: BuildInfo, seed: int = 0):
        self.info = info
        self.lengths_by_source: dict[str, list[int]] = defaultdict(list)
        self.lengths_by_type: dict[str, list[int]] = defaultdict(list)
        self.scores: dict[str, list[float]] = defaultdict(list)
        self.samples: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.withheld: Counter = Counter()
        for split, ds in info.splits.items():
            for row in ds.select(_sample_indices(len(ds), SAMPLE_ROWS, seed)):
                self._add(split, row)

    def _add(self, split: str, row: dict[str, Any]) -> None:
        meta = row.get("meta") or {}
        src = str(row.get("source"))
        n = len(text_of(row))
        self.lengths_by_source[src].append(n)
        self.lengths_by_type[detect_type(row) or "none"].append(n)
        try:
            ann = json.loads(meta.get("annotations") or "{}")
        except json.JSONDecodeError:
            ann = {}
        for key, value in judge_scores(ann):
            self.scores[key].append(value)
        if meta.get("phi_status") == "raw":
            self.withheld[src] += 1
        elif len(self.samples[src]) < SAMPLES_PER_SOURCE:
            # ids of patient-derived rows may embed record numbers: show them only for public sources
            shown_id = row.get("id") if meta.get("phi_status") == "not_applicable" else "(id withheld)"
            self.samples[src].append({"id": shown_id, "split": split, "type": detect_type(row),
                                      "phi_status": meta.get("phi_status"), "parts": _render_row(row)})

    def context(self) -> dict[str, Any]:
        info = self.info
        charts: dict[str, Any] = {"funnel": funnel_chart(info.steps) if info.steps else None}
        if info.source_rows:
            charts["sources"] = stacked_bars("Rows per source in the output (stacked by split)", info.source_rows)
        if any(self.lengths_by_source.values()):
            charts["len_source"] = length_chart("Length per source", self.lengths_by_source)
            charts["len_type"] = length_chart("Length per TRL dataset type", self.lengths_by_type)
        phi = info.phi_counts_by_type("deid")
        charts["phi"] = bar_chart("PHI spans found and replaced, by type", phi, "spans") if phi else None
        dedup = []
        for step, sizes in info.dedup_clusters():
            if not sizes:
                continue
            dedup.append({"step": f"{step['index']} {step['name']}", "clusters": sum(sizes.values()),
                          "rows": sum(k * v for k, v in sizes.items()),
                          "chart": bar_chart(f"Duplicate cluster sizes ({step['name']})",
                                             dict(sorted(sizes.items())), "clusters", PALETTE[4])})
        dedup_drops = {f"{s['index']} {s['name']}": s.get("dropped") for s in info.steps
                       if "dedup" in s["name"] and s.get("dropped")}
        judges = [{"key": k, "n": len(v), "mean": sum(v) / len(v), "chart": histogram_chart(k, v, "score")}
                  for k, v in sorted(self.scores.items())[:8] if v]
        mixes = [{"step": f"{s['index']} {s['name']}", "report": r} for s, r in info.reports("mix")]
        return {
            "name": info.name, "stats": info.stats, "totals": info.stats.get("totals") or {},
            "steps": info.steps, "split_rows": info.split_rows, "total_rows": info.total_rows,
            "sources": sorted(info.sources.values(), key=lambda s: -s.rows_in_output),
            "types": info.type_rows.most_common(), "phi_status": sorted(info.phi_status.items()),
            "phi_counts": phi, "phi_flagged": info.phi_counts_by_type("phi_scan"), "charts": charts, "dedup": dedup, "dedup_drops": dedup_drops, "judges": judges,
            "mixes": mixes, "samples": dict(sorted(self.samples.items())), "withheld": dict(self.withheld),
            "warnings": [w.text for w in build_warnings(info)], "sample_rows": SAMPLE_ROWS, "sample_chars": SAMPLE_CHARS,
        }


def render(build_dir: str | Path, seed: int = 0) -> str:
    """The report's HTML for a build folder."""
    from jinja2 import Environment, select_autoescape

    info = BuildInfo(build_dir)
    template = (resources.files("meddata.publish") / "templates" / "report.html.j2").read_text(encoding="utf-8")
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True), trim_blocks=True,
                      lstrip_blocks=True)
    env.filters["num"] = lambda v: f"{v:,}" if isinstance(v, int) else (f"{v:,.3g}" if isinstance(v, float) else v)
    return env.from_string(template).render(**ReportData(info, seed).context())


def write_report(build_dir: str | Path, out: str | Path | None = None, seed: int = 0) -> Path:
    """Write the report (default ``BUILD_DIR/report.html``) and return its path."""
    path = Path(out) if out else Path(build_dir) / "report.html"
    html = render(build_dir, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")
    return path
