"""What a finished build folder says about itself: stats.json plus counts read from the data.

The card, the HTML report, the Hub push and the training-tool exports all describe the same
build; this module reads it once, with Arrow compute over the metadata columns (no Python
loop over rows), so a large build is summarised in seconds. It never returns row content.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import DatasetDict, load_from_disk

from meddata import exams
from meddata.errors import UserError
from meddata.records import PHI_IN, ROWS_READ, SPLIT_ORDER

#: Licence words that forbid commercial use, or redistribution, of a source.
_NON_COMMERCIAL = re.compile(r"(^|[^a-z])nc([^a-z]|$)|non-?commercial|academic|research[- ]only", re.I)
_RESTRICTED = re.compile(r"\bdua\b|data use agreement|credentialed|restricted|no redistribution", re.I)
#: Licence spellings -> Hugging Face Hub licence identifiers.
_HUB_LICENCES = {
    "apache-2.0": "apache-2.0", "apache2": "apache-2.0", "apache": "apache-2.0", "mit": "mit",
    "cc0": "cc0-1.0", "cc0-1.0": "cc0-1.0", "public-domain": "cc0-1.0", "pddl": "pddl",
    "odc-by": "odc-by", "odbl": "odbl", "bsd-3-clause": "bsd-3-clause", "bsd-2-clause": "bsd-2-clause",
    "gpl-3.0": "gpl-3.0", "lgpl-3.0": "lgpl-3.0", "unknown": "unknown",
}
_CC = re.compile(r"^cc-?by((?:-nc)?(?:-sa|-nd)?)-?(\d(?:\.\d)?)?")


class BuildError(UserError, FileNotFoundError):
    """The folder is not a finished meddata build (message names what is missing)."""


def hub_licence(licence: str | None) -> str:
    """A source's licence as a Hub identifier (``CC-BY-4.0`` -> ``cc-by-4.0``); ``other`` if unknown."""
    if not licence:
        return "unknown"
    key = re.sub(r"[\s_]+", "-", licence.strip().lower()).replace("licence", "").replace("license", "").strip("-")
    key = key.split(",")[0].strip("-")
    if key in _HUB_LICENCES:
        return _HUB_LICENCES[key]
    for name, hub in _HUB_LICENCES.items():
        if key.startswith(name + "-") and name not in ("apache", "cc0"):
            return hub
    if key.startswith("apache-2"):
        return "apache-2.0"
    m = _CC.match(key)
    if m:
        version = m.group(2) or "4.0"
        version = version if "." in version else version + ".0"
        return f"cc-by{m.group(1)}-{version}"
    return "other"


def is_non_commercial(licence: str | None) -> bool:
    return bool(licence) and bool(_NON_COMMERCIAL.search(licence))


def is_restricted(licence: str | None) -> bool:
    return bool(licence) and bool(_RESTRICTED.search(licence))


def size_category(n: int) -> str:
    """The Hub's ``size_categories`` bucket for ``n`` rows."""
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
              (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B")]
    for bound, label in bounds:
        if n < bound:
            return label
    return "1B<n<10B"


def _bools(table: pa.Table, column: str, nonempty_list: bool = False) -> np.ndarray:
    if column not in table.column_names:
        return np.zeros(table.num_rows, dtype=bool)
    col = table.column(column)
    valid = pc.is_valid(col)
    if nonempty_list:
        valid = pc.and_(valid, pc.greater(pc.fill_null(pc.list_value_length(col), 0), 0))
    return np.asarray(valid.to_numpy(zero_copy_only=False), dtype=bool)


def row_types(table: pa.Table) -> np.ndarray:
    """TRL dataset type per row (same precedence as :func:`meddata.records.detect_type`)."""
    pref = _bools(table, "chosen") & _bools(table, "rejected")
    pcomp = ~pref & _bools(table, "prompt") & _bools(table, "completion")
    conv = ~pref & ~pcomp & _bools(table, "messages", nonempty_list=True)
    rest = ~pref & ~pcomp & ~conv
    lm = rest & _bools(table, "text")
    exam = rest & ~lm & _bools(table, "question")
    out = np.full(table.num_rows, "none", dtype=object)
    for mask, name in ((pref, "preference"), (pcomp, "prompt_completion"), (conv, "conversational"),
                       (lm, "language_modeling"), (exam, "exam")):
        out[mask] = name
    return out


def _meta_field(table: pa.Table, name: str) -> pa.ChunkedArray | None:
    if "meta" not in table.column_names:
        return None
    meta = table.column("meta")
    if name not in {f.name for f in meta.type}:
        return None
    return pc.struct_field(meta, name)


def _value_counts(arr: pa.ChunkedArray | pa.Array) -> Counter:
    return Counter({c["values"]: c["counts"] for c in pc.value_counts(arr).to_pylist()})


@dataclass
class SourceInfo:
    """One input source as the card lists it."""

    name: str
    builders: list[str] = field(default_factory=list)
    licences: set[str] = field(default_factory=set)
    phi_status_in: Counter = field(default_factory=Counter)
    rows_read: int = 0
    rows_in_output: int = 0


class BuildInfo:
    """A finished build folder: ``stats.json``, ``dataset/`` and the files next to them."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        stats_path = self.root / "stats.json"
        if not stats_path.is_file():
            raise BuildError(f"{self.root}: not a meddata build folder (no stats.json; run 'meddata build' first)")
        try:
            self.stats: dict[str, Any] = json.loads(stats_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise BuildError(f"{stats_path}: not valid JSON (line {exc.lineno}); rebuild the dataset") from None
        if not (self.root / "dataset" / "dataset_dict.json").is_file():
            raise BuildError(f"{self.root}: the dataset folder is missing (dataset/dataset_dict.json)")

    # -- stats.json -----------------------------------------------------------------------
    @property
    def name(self) -> str:
        return str(self.stats.get("recipe") or self.root.name)

    @property
    def steps(self) -> list[dict[str, Any]]:
        return list(self.stats.get("steps") or [])

    @property
    def builder_steps(self) -> list[dict[str, Any]]:
        return [s for s in self.steps if s.get("kind") == "builder"]

    @property
    def counters(self) -> Counter:
        total: Counter = Counter()
        for s in self.steps:
            total.update({k: v for k, v in (s.get("counters") or {}).items() if isinstance(v, (int, float))})
        return total

    def exam_prompt_templates(self) -> exams.PromptTemplates | None:
        """The prompt the build's exam instructions were made with (``mcq_instruction``, or an
        ``exam`` input with ``as: instruction``), so ``meddata eval`` can ask in the same words;
        None when the build made none. Raises BuildError when its steps used different ones."""
        found: set[exams.PromptTemplates] = set()
        for s in self.steps:
            params = s.get("params") or {}
            if s.get("name") == "mcq_instruction" or (
                    s.get("name") == "exam" and (params.get("as_") or params.get("as")) == "instruction"):
                found.add(exams.PromptTemplates(mcq=params.get("template") or exams.MCQ_TEMPLATE,
                                                yes_no_maybe=params.get("yes_no_maybe_template")
                                                or exams.YES_NO_MAYBE_TEMPLATE,
                                                system=params.get("system")))
        if len(found) > 1:
            raise BuildError(f"{self.root}: exam instructions were made with {len(found)} different prompt "
                             "templates; give the one to evaluate with as mcq_template in the eval config")
        return found.pop() if found else None

    def steps_named(self, *prefixes: str) -> list[dict[str, Any]]:
        return [s for s in self.steps if any(s["name"] == p or s["name"].startswith(p + "_") for p in prefixes)]

    def phi_counts_by_type(self, *prefixes: str) -> dict[str, int]:
        """``phi.TYPE`` counters summed over the steps with these name prefixes (default: every
        step), most frequent first. ``deid`` counts the spans it replaced; ``phi_scan`` counts
        the PHI-like spans it flagged afterwards, so the two are asked for separately."""
        total: Counter = Counter()
        for s in self.steps_named(*prefixes) if prefixes else self.steps:
            total.update({k[4:]: int(v) for k, v in (s.get("counters") or {}).items()
                          if k.startswith("phi.") and isinstance(v, (int, float)) and v})
        return dict(sorted(total.items(), key=lambda kv: -kv[1]))

    def dedup_clusters(self) -> list[tuple[dict[str, Any], Counter]]:
        """(step, cluster size -> clusters) for every step that reported its duplicate
        clusters (the dedup steps do, also when they found none)."""
        return [(s, cluster_sizes(s["report"])) for s in self.steps
                if isinstance((s.get("report") or {}).get("clusters"), list)]

    # -- the data -------------------------------------------------------------------------
    @cached_property
    def splits(self) -> DatasetDict:
        dsd = load_from_disk(str(self.root / "dataset"))
        if not isinstance(dsd, DatasetDict):
            raise BuildError(f"{self.root / 'dataset'}: expected a DatasetDict with one entry per split")
        order = sorted(dsd, key=lambda s: (SPLIT_ORDER.index(s) if s in SPLIT_ORDER else 99, s))
        return DatasetDict({k: dsd[k] for k in order})

    def tables(self) -> dict[str, pa.Table]:
        return {name: ds.data.table for name, ds in self.splits.items()}

    @cached_property
    def split_rows(self) -> dict[str, int]:
        return {name: len(ds) for name, ds in self.splits.items()}

    @property
    def total_rows(self) -> int:
        return sum(self.split_rows.values())

    @cached_property
    def source_rows(self) -> dict[str, dict[str, int]]:
        """source -> split -> rows in the output."""
        out: dict[str, dict[str, int]] = {}
        for split, table in self.tables().items():
            if table.num_rows:
                for src, n in _value_counts(table.column("source")).items():
                    out.setdefault(str(src), {})[split] = n
        return out

    @cached_property
    def type_rows(self) -> Counter:
        total: Counter = Counter()
        for table in self.tables().values():
            total.update(Counter(row_types(table).tolist()))
        return total

    @cached_property
    def phi_status(self) -> Counter:
        """Final ``meta.phi_status`` counts, read from the data (not trusted from stats)."""
        total: Counter = Counter()
        for table in self.tables().values():
            arr = _meta_field(table, "phi_status")
            if arr is not None and table.num_rows:
                total.update(_value_counts(arr))
        return total

    @property
    def raw_rows(self) -> int:
        return int(self.phi_status.get("raw", 0))

    @cached_property
    def generators(self) -> Counter:
        """(generator_model, prompt_id) -> rows, for synthetic rows only."""
        total: Counter = Counter()
        for table in self.tables().values():
            model, prompt = _meta_field(table, "generator_model"), _meta_field(table, "prompt_id")
            if model is None or not table.num_rows:
                continue
            pairs = pa.table({"m": model, "p": prompt if prompt is not None else pa.nulls(table.num_rows, pa.string())})
            pairs = pairs.filter(pc.is_valid(pairs.column("m")))
            if pairs.num_rows:
                grouped = pairs.group_by(["m", "p"]).aggregate([([], "count_all")])
                for r in grouped.to_pylist():
                    total[(r["m"], r["p"])] += r["count_all"]
        return total

    @cached_property
    def output_licences(self) -> dict[str, set[str]]:
        """source -> licences its output rows carry in ``meta.licence``."""
        out: dict[str, set[str]] = {}
        for table in self.tables().values():
            lic = _meta_field(table, "licence")
            if lic is None or not table.num_rows:
                continue
            pairs = pa.table({"s": table.column("source"), "l": lic}).filter(pc.is_valid(lic))
            if pairs.num_rows:
                for r in pairs.group_by(["s", "l"]).aggregate([]).to_pylist():
                    out.setdefault(str(r["s"]), set()).add(str(r["l"]))
        return out

    @cached_property
    def sources(self) -> dict[str, SourceInfo]:
        """Every source: the builders that read it, licences, PHI status at input, row counts."""
        out: dict[str, SourceInfo] = {}
        for step in self.builder_steps:
            params = step.get("params") or {}
            read, phi_in = _per_source_reads(step.get("counters") or {})
            if not read:  # a build from before builders counted reads per source: guess the key
                name = str(params.get("source") or _stem(params.get("path")) or step["name"])
                read = {name: int(step.get("rows_in") or 0)}
                phi_in = {name: Counter(step.get("phi_status") or {})}
            for name, n in read.items():
                info = out.setdefault(name, SourceInfo(name))
                info.builders.append(step["name"])
                if params.get("licence"):
                    info.licences.add(str(params["licence"]))
                info.phi_status_in.update(phi_in.get(name) or {})
                if params.get("phi_status") and not info.phi_status_in:
                    info.phi_status_in[str(params["phi_status"])] += 0
                info.rows_read += n
        for src, per_split in self.source_rows.items():
            info = out.setdefault(src, SourceInfo(src))
            info.rows_in_output = sum(per_split.values())
            info.licences |= self.output_licences.get(src, set())
        return out

    @property
    def licences(self) -> set[str]:
        return {lic for s in self.sources.values() for lic in s.licences}

    @property
    def non_commercial_licences(self) -> list[str]:
        """The licences that forbid commercial use (card, report and push all warn about them)."""
        return sorted(lic for lic in self.licences if is_non_commercial(lic))

    @property
    def had_raw_input(self) -> bool:
        """True when any source was raw patient data (raw EHR), even if de-identified since."""
        for step in self.steps:
            if (step.get("phi_status") or {}).get("raw", 0) > 0:
                return True
            if step.get("kind") == "builder" and (step.get("params") or {}).get("phi_status") == "raw":
                return True
        return self.raw_rows > 0

    def judge_scores(self) -> dict[str, Counter]:
        """Judge score name (``judge.accuracy``, ``judge.overall``...) -> score -> rows, over
        every row of the dataset. Only annotations that mention a judge or score are parsed."""
        out: dict[str, Counter] = {}
        for table in self.tables().values():
            arr = _meta_field(table, "annotations")
            if arr is None or not table.num_rows:
                continue
            arr = pc.drop_null(arr)
            hits = pc.or_(pc.match_substring(arr, "judge", ignore_case=True),
                          pc.match_substring(arr, "score", ignore_case=True))
            for raw in pc.filter(arr, hits).to_pylist():
                try:
                    annotations = json.loads(raw)
                except json.JSONDecodeError:
                    continue
                for key, value in judge_scores(annotations):
                    out.setdefault(key, Counter())[value] += 1
        return dict(sorted(out.items()))

    def reports(self, *prefixes: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """(step, report) for steps with these name prefixes and a non-empty report."""
        return [(s, s["report"]) for s in self.steps_named(*prefixes) if s.get("report")]




def _per_source_reads(counters: Mapping[str, Any]) -> tuple[dict[str, int], dict[str, Counter]]:
    """A builder's ``rows_read.<source>`` and ``phi_in.<status>.<source>`` counters (the keys
    of :mod:`meddata.builders.rows_out`; the source is the same string as the rows' column)."""
    read: dict[str, int] = {}
    phi: dict[str, Counter] = {}
    for key, value in counters.items():
        if key.startswith(ROWS_READ):
            read[key[len(ROWS_READ):]] = int(value)
        elif key.startswith(PHI_IN):
            status, _, source = key[len(PHI_IN):].partition(".")
            phi.setdefault(source, Counter())[status] += int(value)
    return read, phi


def _stem(path: Any) -> str | None:
    if not path or not isinstance(path, str):
        return None
    return Path(path).stem or None


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def judge_scores(annotations: Mapping[str, Any]) -> list[tuple[str, float]]:
    """(name, score) pairs in one row's ``meta.annotations``.

    The ``judge`` step writes ``{"scores": {criterion: 1-5}, "overall": x, "mean": x, ...}``:
    that gives ``judge.<criterion>`` per criterion and ``judge.overall`` (the aggregate the
    filter used; ``mean`` repeats it or the criteria). A plain number whose key mentions
    ``judge`` or ``score`` (a user's own scorer) counts too.
    """
    out: list[tuple[str, float]] = []
    for key, value in annotations.items():
        low = str(key).lower()
        if "judge" not in low and "score" not in low:
            continue
        if isinstance(value, Mapping) and isinstance(value.get("scores"), Mapping):
            out += [(f"{key}.{c}", float(v)) for c, v in value["scores"].items() if _is_number(v)]
            if _is_number(value.get("overall")):
                out.append((f"{key}.overall", float(value["overall"])))
        elif _is_number(value):
            out.append((str(key), float(value)))
    return out


def cluster_sizes(report: Mapping[str, Any]) -> Counter:
    """Cluster size -> number of clusters, from a dedup step's report.

    The dedup steps (``exact_dedup``, ``minhash_dedup``, ``semantic_dedup``) count every
    cluster of two or more rows by size under ``cluster_sizes`` (older builds: every cluster as
    ``{"members": [ids...], "kept": id}`` under ``clusters``).
    """
    sizes: Counter = Counter()
    if isinstance(report.get("cluster_sizes"), Mapping):  # dedup steps count all, list a sample
        sizes.update({int(k): int(v) for k, v in report["cluster_sizes"].items()})
        return sizes
    clusters = report.get("clusters")
    if isinstance(clusters, list):
        for c in clusters:
            if isinstance(c, Mapping) and isinstance(c.get("members"), list) and len(c["members"]) > 1:
                sizes[len(c["members"])] += 1
    return sizes
