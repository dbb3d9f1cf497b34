"""exact_dedup and minhash_dedup as recipe steps, on real data, through real builds."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import pytest
from datasets import Dataset
from meddata.filters.dedup import ExactDedup, MinHashDedup, normalize_exact, row_content
from meddata.filters.minhash import lsh_params
from testutil import DATA, EXAMPLES, read_jsonl, write_jsonl

from meddata import registry
from meddata.recipe import RecipeError, from_dict
from meddata.records import BASE_FEATURES, annotate, messages, new_meta, new_row
from meddata.steps import StepContext

DEDUP = DATA / "dedup"
EXAMPLE_MEDQUAD = EXAMPLES / "data" / "medquad_sample.jsonl"
MTSAMPLES = DEDUP / "mtsamples_subset.jsonl.gz"
SYNTHEA = DEDUP / "synthea_notes_3patients.jsonl.gz"
PLANTED = DEDUP / "planted_neardup.jsonl.gz"


def gz_rows(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def mtsamples_recipe(**dedup) -> dict:
    return {
        "name": "mtsamples-dedup",
        "inputs": [{"builder": "table", "path": str(MTSAMPLES), "source": "mtsamples", "licence": "CC0-1.0",
                    "columns": {"id": "note_id", "text": "transcription"}}],
        "steps": [{"exact_dedup": dedup}],
        "output": {"formats": ["jsonl"], "card": False},
    }


def drop_log(result, step: str) -> list[dict]:
    path = next(result.out_dir.glob(f"dropped/*-{step}.jsonl"), None)
    return read_jsonl(path) if path else []


def kept_rows(result) -> list[dict]:
    return [r for f in sorted((result.out_dir / "jsonl").glob("*.jsonl")) for r in read_jsonl(f)]


def test_steps_are_registered():
    steps = registry.all_steps()
    for name in ("exact_dedup", "minhash_dedup", "semantic_dedup"):
        assert steps[name].kind == "global"


def test_mtsamples_exact_duplicates_collapse_with_reasons(build):
    """The MTSamples acceptance on a real subset: groups found, every drop explained."""
    raw = gz_rows(MTSAMPLES)
    texts = [" ".join((r["transcription"] or "").split()) for r in raw]
    counts = Counter(t for t in texts if t)
    groups = sum(1 for c in counts.values() if c > 1)
    assert groups == 40 and len(counts) == 70  # the subset as documented in SOURCES.md

    result = build(mtsamples_recipe())
    reader, dedup = result.steps
    assert reader.rows_in == len(raw)
    assert reader.dropped == {"empty_text": sum(1 for t in texts if not t)}
    assert dedup.dropped == {"exact_duplicate": sum(c - 1 for c in counts.values())}
    assert dedup.report["n_clusters"] == groups
    assert result.totals["out"] == len(counts)

    kept = {r["id"]: r["text"] for r in kept_rows(result)}
    drops = drop_log(result, "exact_dedup")
    assert len(drops) == dedup.n_dropped
    for d in drops:
        assert d["reason"] == "exact_duplicate"
        target = json.loads(d["meta"]["annotations"])["duplicate_of"]
        assert " ".join(kept[target].split()) == " ".join(d["text"].split())
    listed = dedup.report["clusters"]
    assert len(listed) == groups and all(c["kept"] in c["members"] and len(c["members"]) > 1 for c in listed)
    assert {c["kept"] for c in listed} <= set(kept)
    # keep: first keeps the earliest row of each group
    order = {f"mtsamples:{r['note_id']}": i for i, r in enumerate(raw)}
    assert all(order[c["kept"]] == min(order[m] for m in c["members"]) for c in listed)


def test_keep_longest_and_the_normalisation_options(tmp_path, build):
    rows = [
        {"id": "a", "text": "Fever and cough."},
        {"id": "b", "text": "fever  and cough"},
        {"id": "c", "text": "FEVER AND COUGH!!"},
        {"id": "d", "text": "Fever and cough."},
        {"id": "e", "text": "..."},
    ]
    src = write_jsonl(tmp_path / "rows.jsonl", rows)

    def run(**params):
        recipe = {"name": "norm", "inputs": [{"builder": "table", "path": str(src), "source": "s",
                                             "columns": {"id": "id", "text": "text"}}],
                  "steps": [{"exact_dedup": params}], "output": {"formats": ["jsonl"], "card": False}}
        return build(recipe, out=tmp_path / f"out-{len(list(tmp_path.iterdir()))}")

    plain = run()  # whitespace only: a == d; "..." is content
    assert plain.steps[1].dropped == {"exact_duplicate": 1}
    loose = run(normalize=True, keep="longest")  # all four fever rows are one; "..." has nothing left
    assert loose.steps[1].dropped == {"exact_duplicate": 3, "empty_text": 1}
    assert [r["id"] for r in kept_rows(loose)] == ["s:c"]  # the longest text
    assert normalize_exact("A,  b!", ["case", "punctuation", "whitespace"]) == "a b"


def test_per_field_dedup_on_the_user_turn():
    meta = new_meta(builder="test")
    q = "What are the side effects of metformin?"
    rows = [
        new_row(source="qa", meta=meta, id="1", messages=messages(("user", q), ("assistant", "Nausea and diarrhoea."))),
        new_row(source="qa", meta=meta, id="2", messages=messages(("user", q), ("assistant", "Mostly stomach upset."))),
        new_row(source="qa", meta=meta, id="3", messages=messages(("user", "Other question?"), ("assistant", "x"))),
    ]
    assert row_content(rows[0], ["messages.user"]) == q
    ds = Dataset.from_list(rows, features=BASE_FEATURES)
    ctx = StepContext(step_dir=Path("."))
    whole = ExactDedup({}).apply(ds, ctx)
    assert whole.dropped is not None and len(whole.dropped) == 0
    by_user = ExactDedup({"fields": ["messages.user"]}).apply(ds, ctx)
    assert by_user.kept["id"] == ["1", "3"] and by_user.dropped["__reason__"] == ["exact_duplicate"]


def test_keep_quality_uses_the_annotation_score():
    meta = new_meta(builder="test")
    rows = [new_row(source="s", meta=dict(meta), id=str(i), text="same text for all rows") for i in range(4)]
    for row, score in zip(rows, [2, None, 5, "high"]):
        if score is not None:
            annotate(row, "judge_score", score)
    ds = Dataset.from_list(rows, features=BASE_FEATURES)
    step = ExactDedup({"keep": "quality", "quality_key": "judge_score"})
    result = step.apply(ds, StepContext(step_dir=Path(".")))
    assert result.kept["id"] == ["2"]
    assert step.take_stats() == {"dedup.missing_quality_score": 2}
    assert result.report["clusters"] == [{"members": ["0", "1", "2", "3"], "kept": "2"}]
    for meta_ in result.dropped["meta"]:
        assert json.loads(meta_["annotations"])["duplicate_of"] == "2"


def test_bad_parameters_are_reported_when_the_recipe_loads():
    with pytest.raises(RecipeError, match="quality_key"):
        from_dict(mtsamples_recipe(keep="quality"))
    with pytest.raises(RecipeError, match="fields"):
        from_dict(mtsamples_recipe(fields=["messages.doctor"]))
    with pytest.raises(RecipeError, match="threshold"):
        from_dict({**mtsamples_recipe(), "steps": [{"minhash_dedup": {"threshold": 1.5}}]})


def test_patient_scope_on_synthea_copy_forward_notes(tmp_path, build):
    notes = gz_rows(SYNTHEA)
    # one note filed again under another patient: a template that must stay per patient
    clone = {**notes[0], "doc_id": "copied", "patient_id": notes[-1]["patient_id"]}
    assert clone["patient_id"] != notes[0]["patient_id"]
    src = write_jsonl(tmp_path / "notes.jsonl", [*notes, clone])

    def run(scope: str):
        recipe = {"name": "synthea", "inputs": [{"builder": "table", "path": str(src), "source": "synthea",
                                                "phi_status": "raw",
                                                "columns": {"id": "doc_id", "text": "text", "patient_id": "patient_id"}}],
                  "steps": [{"minhash_dedup": {"threshold": 0.8, "scope": scope}}],
                  "output": {"formats": ["jsonl"], "card": False}}
        return build(recipe, out=tmp_path / scope)

    patient_of = {f"synthea:{n['doc_id']}": n["patient_id"] for n in [*notes, clone]}
    scoped, corpus = run("patient"), run("corpus")
    clusters = scoped.steps[1].report["clusters"]
    assert clusters, "copy-forward notes of one patient should collapse"
    assert all(len({patient_of[m] for m in c["members"]}) == 1 for c in clusters)
    assert not any("synthea:copied" in c["members"] for c in clusters)
    assert any("synthea:copied" in c["members"] for c in corpus.steps[1].report["clusters"])
    assert corpus.steps[1].dropped["near_duplicate"] == scoped.steps[1].dropped["near_duplicate"] + 1
    # raw PHI rows: the drop log keeps the reason but withholds the text
    drops = drop_log(scoped, "minhash_dedup")
    assert drops and all(d["reason"] == "near_duplicate" and "text" not in d for d in drops)


def test_minhash_dedup_step_on_planted_near_duplicates(build):
    docs = gz_rows(PLANTED)
    recipe = {"name": "planted", "inputs": [{"builder": "table", "path": str(PLANTED), "source": "p",
                                            "columns": {"id": "id", "text": "text"}}],
              "steps": [{"minhash_dedup": {"threshold": 0.8, "ngram": 5}}],
              "output": {"formats": ["jsonl"], "card": False}}
    result = build(recipe)
    step = result.steps[1]
    family = {f"p:{d['id']}": d["family"] for d in docs}
    report = step.report
    assert (report["bands"], report["rows"]) == lsh_params(0.8, 128, 0.995)
    for cluster in report["clusters"]:
        assert len({family[m] for m in cluster["members"]}) == 1
    planted = sum(d["kind"] == "planted" for d in docs)
    assert step.dropped["near_duplicate"] >= 0.99 * planted
    kept_ids = {r["id"] for r in kept_rows(result)}
    assert len({family[i] for i in kept_ids}) == len(kept_ids)  # one row per family survives
    drops = drop_log(result, "minhash_dedup")
    assert all(json.loads(d["meta"]["annotations"])["duplicate_of"] in kept_ids for d in drops)


def test_minhash_dedup_reads_the_chosen_field():
    meta = new_meta(builder="test")
    long_q = ("My father was diagnosed with atrial fibrillation last month and the cardiologist started "
              "him on apixaban twice daily; should he stop taking aspirin now?")
    rows = [
        new_row(source="s", meta=meta, id="1", messages=messages(("user", long_q), ("assistant", "Answer one."))),
        new_row(source="s", meta=meta, id="2", messages=messages(("user", long_q.upper()), ("assistant", "Two."))),
    ]
    ds = Dataset.from_list(rows, features=BASE_FEATURES)
    ctx = StepContext(step_dir=Path("."))
    assert len(MinHashDedup({"fields": ["messages.user"]}).apply(ds, ctx).kept) == 1
    assert len(MinHashDedup({"fields": ["messages.assistant"]}).apply(ds, ctx).kept) == 2


def test_keep_quality_reads_a_nested_judge_score():
    meta = new_meta(builder="test")
    rows = [new_row(source="s", meta=dict(meta), id=str(i), text="same text for all rows") for i in range(3)]
    for row, overall in zip(rows, [3.5, 4.75, 2.0]):
        annotate(row, "judge", {"scores": {"accuracy": 4}, "overall": overall})
    ds = Dataset.from_list(rows, features=BASE_FEATURES)
    result = ExactDedup({"keep": "quality", "quality_key": "judge.overall"}).apply(ds, StepContext(step_dir=Path(".")))
    assert result.kept["id"] == ["1"]


def test_the_step_report_counts_every_cluster_but_lists_a_bounded_sample(tmp_path, build):
    """stats.json used to list every duplicate cluster (27 MB at a million rows): now counts by
    size for all, ids for the first CLUSTER_SAMPLE clusters; the drop log still names each kept row."""
    from meddata.filters.dedup import CLUSTER_SAMPLE

    answers = list(dict.fromkeys(" ".join(r["answer"].split()) for r in read_jsonl(EXAMPLE_MEDQUAD)))
    n_pairs = CLUSTER_SAMPLE + 37
    rows = [{"id": f"r{k}", "text": answers[k]} for k in range(len(answers))]
    rows += [{"id": f"copy{k}", "text": answers[k]} for k in range(n_pairs)]
    rows += [{"id": f"third{k}", "text": answers[k]} for k in range(5)]  # 5 clusters of three
    src = write_jsonl(tmp_path / "rows.jsonl", rows)
    result = build({"name": "many", "inputs": [{"builder": "table", "path": str(src), "source": "s",
                                                "columns": {"id": "id", "text": "text"}}],
                    "steps": ["exact_dedup"], "output": {"card": False}})
    report = result.steps[1].report
    assert report["n_clusters"] == n_pairs and report["cluster_sizes"] == {"2": n_pairs - 5, "3": 5}
    assert len(report["clusters"]) == CLUSTER_SAMPLE
    assert report["clusters"][0] == {"members": ["s:r0", "s:copy0", "s:third0"], "kept": "s:r0"}
    assert result.steps[1].dropped == {"exact_duplicate": n_pairs + 5}
    drops = read_jsonl(result.out_dir / "dropped" / "01-exact_dedup.jsonl")
    assert {json.loads(d["meta"]["annotations"])["duplicate_of"] for d in drops} == {f"s:r{k}" for k in range(n_pairs)}
