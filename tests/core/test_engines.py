"""Engines: the local engine with 1 and 2 processes gives the same build (the Ray engine on a
two-node cluster: test_ray_cluster.py), and the step contract (expansion, drops, quarantine, counters) is accounted for."""

from __future__ import annotations

import re
from typing import ClassVar

import datasets
import pytest
from testutil import EXAMPLES, read_jsonl

from meddata import pipeline, recipe
from meddata.pipeline import ConservationError
from meddata.records import messages, new_row
from meddata.steps import Drop, Mapper, Quarantine, StepContext

QUICKSTART = EXAMPLES / "recipes" / "quickstart.yaml"


def _rows(result) -> list[dict]:
    return list(datasets.load_from_disk(str(result.dataset_dir))["train"])


def test_local_multiprocess_matches_single_process(tmp_path):
    one = pipeline.run(recipe.load(QUICKSTART), tmp_path / "one", num_proc=1)
    two = pipeline.run(recipe.load(QUICKSTART), tmp_path / "two", num_proc=2)
    assert one.totals == two.totals
    assert _rows(one) == _rows(two)


class SplitTurns(Mapper):
    """Test step: one row per message turn pair; quarantines rows without an assistant turn,
    drops very short questions; counts turns."""

    name = "test_split_turns"
    description = "test-only expansion step"
    creates_rows: ClassVar[bool] = True

    def process(self, row: dict, ctx: StepContext):
        question = row["messages"][0]["content"]
        if len(question) < 25:
            return Drop(row, "short_question")
        if "diagnose" in question.lower():
            return Quarantine("field 'messages' rejected by the test step", row=row)
        self.stat_update("turns", 2)
        base = {"source": row["source"], "meta": row["meta"]}
        return [
            new_row(id=row["id"] + "#q", text=question, **base),
            new_row(id=row["id"] + "#a", messages=messages(("user", "Explain."), ("assistant", row["messages"][1]["content"])), **base),
        ]


class Undeclared(SplitTurns):
    name = "test_undeclared"
    creates_rows: ClassVar[bool] = False


def _recipe_with(step) -> recipe.Recipe:
    rec = recipe.load(QUICKSTART)
    rec.steps = [rec.steps[0], step]
    return rec


def test_expansion_drops_and_quarantine_are_accounted(tmp_path):
    result = pipeline.run(_recipe_with(SplitTurns()), tmp_path / "x")
    st = result.steps[-1]
    assert st.dropped["short_question"] > 0 and st.quarantined > 0
    consumed = st.rows_in - st.n_dropped - st.quarantined
    assert st.rows_out == 2 * consumed and st.created == consumed
    assert st.counters["turns"] == 2 * consumed
    t = result.totals
    assert t["read"] == t["out"] + t["dropped"] + t["quarantined"] - t["created"]
    q = read_jsonl(result.out_dir / "quarantine.jsonl")
    assert len(q) == st.quarantined
    assert all(re.fullmatch(r"examples/data/\w+\.jsonl?:(line|item) \d+", e["where"]) for e in q), q[0]["where"]
    assert {"step", "id", "error", "where"} <= set(q[0])


def test_undeclared_expansion_fails_loudly(tmp_path):
    with pytest.raises(ConservationError, match="does not declare creates_rows"):
        pipeline.run(_recipe_with(Undeclared()), tmp_path / "x")


def test_filters_kept_as_an_arrow_mask_write_the_same_rows_as_rebuilt_rows(tmp_path):
    """Quality filters in filter mode keep rows as a mask over the Arrow batch (meta.steps
    appended in Arrow); the same filters forced through the row-by-row path give identical
    rows, drop logs and counts, on real QA rows with planted repetition."""
    from meddata.filters.quality import LengthFilter, RepetitionFilter

    class RowByRowRepetition(RepetitionFilter):
        rows_unchanged = False  # a subclass that opts out: the generic path

    class RowByRowLength(LengthFilter):
        rows_unchanged = False

    def build(steps, out):
        rec = recipe.load(QUICKSTART)
        rec.steps = [rec.steps[0], *steps]
        return pipeline.run(rec, tmp_path / out, num_proc=2)

    assert RepetitionFilter().rows_unchanged and not RepetitionFilter(mode="annotate").rows_unchanged
    fast = build([LengthFilter(min_chars=400), RepetitionFilter(ngram_min_words=0)], "fast")
    slow = build([RowByRowLength(min_chars=400), RowByRowRepetition(ngram_min_words=0)], "slow")
    assert fast.totals == slow.totals and fast.steps[-1].dropped == slow.steps[-1].dropped
    assert fast.steps[-2].dropped["too_short"] > 0 and fast.steps[-1].n_dropped > 0
    assert _rows(fast) == _rows(slow)
    assert all(r["meta"]["steps"][-2:] == ["length_filter", "repetition_filter"] for r in _rows(fast))
    for name in ("03-length_filter.jsonl", "04-repetition_filter.jsonl"):
        assert read_jsonl(fast.out_dir / "dropped" / name) == read_jsonl(slow.out_dir / "dropped" / name)
