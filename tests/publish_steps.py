"""Inputs and small user-written steps shared by the publishing tests (card, push, report).

The steps go through the public step contract exactly as a user's plugin would: a regex
de-identifier for the synthetic Synthea names/dates that measures recall against gold names,
an exact-duplicate remover that reports cluster sizes, and a judge that writes scores into
``meta.annotations``. They exist so the card and report have de-identification, dedup and
judge numbers to show before the project's own steps for those land.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter, defaultdict

from datasets import Dataset
from testutil import DATA

from meddata.records import annotate, text_of
from meddata.registry import register
from meddata.steps import GlobalResult, GlobalStep, Mapper, StepContext, StepParams, split_by_reasons

PUBLISH = DATA / "publish"
MEDQUAD = {"builder": "table", "path": str(PUBLISH / "medquad.jsonl"), "source": "medquad",
           "licence": "CC-BY-4.0", "columns": {"id": "qid", "user": "question", "assistant": "answer"}}
CHATDOCTOR = {"builder": "table", "path": str(PUBLISH / "chatdoctor.json"), "source": "chatdoctor",
              "licence": "Apache-2.0", "columns": {"user": "input", "assistant": "output"}}
OPENSTAX = {"builder": "table", "path": str(PUBLISH / "openstax_glossary.jsonl"), "source": "openstax",
            "licence": "CC-BY-NC-SA-4.0", "columns": {"user": "What does the term '{term}' mean?",
                                                      "assistant": "{definition}"}}
SYNTHEA = {"builder": "table", "path": str(PUBLISH / "synthea_notes.jsonl"), "source": "synthea_notes",
           "licence": "synthetic", "phi_status": "raw",
           "columns": {"id": "doc_id", "text": "text", "patient_id": "patient_id"}}

_NAME = re.compile(r"\b[A-Z][a-z]+\d{1,3}\b")
_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")


def synthea_notes() -> list[dict]:
    with (PUBLISH / "synthea_notes.jsonl").open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def synthea_names() -> list[str]:
    return sorted({m.group(0) for n in synthea_notes() for m in _NAME.finditer(n["text"])})


class RegexDeidParams(StepParams):
    strategy: str = "mask"
    gold_names: list[str] = []


@register
class RegexDeidDemo(GlobalStep):
    name = "deid_regex_demo"
    description = "Test-only: mask Synthea-style names and ISO dates, measure recall on gold names."
    Params = RegexDeidParams

    def apply(self, dataset: Dataset, ctx: StepContext) -> GlobalResult:
        found: Counter = Counter()

        def mask(row: dict) -> dict:
            if row["meta"]["phi_status"] != "raw":
                return row
            text = row["text"]
            names, dates = len(_NAME.findall(text)), len(_DATE.findall(text))
            found.update({"NAME": names, "DATE": dates})
            row["text"] = _DATE.sub("[DATE]", _NAME.sub("[NAME]", text))
            row["meta"]["phi_status"] = "deidentified"
            return annotate(row, "phi", {"NAME": names, "DATE": dates})

        out = dataset.map(mask, cache_file_name=str(ctx.step_dir / "deid.arrow"), load_from_cache_file=False)
        for k, v in found.items():
            self.stat_update(f"phi.{k}", v)
        text = "\n".join(t for t in out["text"] if t) if "text" in out.column_names else ""
        gold = self.params.gold_names
        missed = sum(1 for g in gold if g in text)
        recall = (len(gold) - missed) / len(gold) if gold else None
        return GlobalResult(kept=out, report={"gold": {"names": len(gold), "recall": recall}})


@register
class ExactDedupDemo(GlobalStep):
    name = "exact_dedup_demo"
    description = "Test-only: drop rows whose content repeats an earlier row, report cluster sizes."

    def apply(self, dataset: Dataset, ctx: StepContext) -> GlobalResult:
        groups: dict[str, list[int]] = defaultdict(list)
        for i, row in enumerate(dataset):
            groups[hashlib.sha1(text_of(row).encode()).hexdigest()].append(i)
        reasons: list[str | None] = [None] * len(dataset)
        sizes: Counter = Counter()
        for members in groups.values():
            if len(members) > 1:
                sizes[len(members)] += 1
                for i in members[1:]:
                    reasons[i] = "exact_duplicate"
        result = split_by_reasons(dataset, reasons)
        result.report = {"cluster_sizes": {str(k): v for k, v in sorted(sizes.items())}}
        return result


@register
class JudgeDemo(Mapper):
    name = "judge_demo"
    description = "Test-only: deterministic 1-5 'judge' scores from the row's length, into meta.annotations."

    def process(self, row: dict, ctx: StepContext) -> dict:
        n = len(text_of(row))
        return annotate(row, "judge", {"accuracy": 1 + n % 5, "safety": 1 + (n // 7) % 5})


class GeneratorDemoParams(StepParams):
    models: list[str]
    prompt_id: str


@register
class GeneratorDemo(Mapper):
    name = "generator_demo"
    description = "Test-only: stamp generator_model/prompt_id as an LLM rewriting step would."
    Params = GeneratorDemoParams

    def process(self, row: dict, ctx: StepContext) -> dict:
        models = self.params.models
        row["meta"]["generator_model"] = models[int(hashlib.sha1(row["id"].encode()).hexdigest(), 16) % len(models)]
        row["meta"]["prompt_id"] = self.params.prompt_id
        return row
