"""Decontamination against exam files: verbatim and lightly edited copies go, clean rows stay."""

from __future__ import annotations

import difflib
import json
import random

import pytest
from meddata.filters.decontam import ContaminationIndex, Decontaminate, normalize_words
from testutil import DATA, read_jsonl, write_jsonl

from meddata.errors import StepSetupError
from meddata.recipe import RecipeError
from meddata.steps import StepContext

D = DATA / "decontam"
EVAL = read_jsonl(D / "medqa_eval.jsonl")
CLEAN = read_jsonl(D / "clean_train.jsonl")
SWAPS = {"patient": "individual", "man": "male", "woman": "female", "boy": "child", "girl": "child",
         "following": "given", "most": "best", "presents": "presented", "common": "frequent",
         "likely": "probable", "treatment": "therapy", "diagnosis": "finding", "with": "having"}


def light_edit(question: str, rng: random.Random) -> str:
    """About one word in ten changed (numbers shifted, synonyms, fillers), commas dropped,
    first letter lower-cased: the kind of copy a scraped study guide holds."""
    words = question.split()
    n = max(2, len(words) // 10)
    step = len(words) / (n + 1)
    for k in range(1, n + 1):
        i = int(k * step)
        core = words[i].strip(".,?:;").lower()
        if core.isdigit():
            words[i] = words[i].replace(core, str(int(core) + 1))
        elif core in SWAPS:
            words[i] = SWAPS[core]
        else:
            words[i] = rng.choice(["certain", "that", "also", "very"])
    text = " ".join(words).replace(",", "")
    return text[0].lower() + text[1:]


def options_text(item: dict, rng: random.Random | None = None) -> str:
    opts = list(item["options"].values())
    if rng:
        rng.shuffle(opts)
    return "\n".join(opts)


def planted_rows() -> tuple[list[dict], list[dict], list[dict]]:
    rng = random.Random(0)
    mid = [e for e in EVAL if 13 <= len(e["question"].split()) < 25]
    long = [e for e in EVAL if len(e["question"].split()) >= 25]
    verbatim_items, edited_items = mid[:10] + long[:10], long[10:30]
    verbatim = [{"id": f"verbatim-{i}", "question": f"{e['question']}\n{options_text(e)}", "answer": e["answer"]}
                for i, e in enumerate(verbatim_items)]
    edited = [{"id": f"edited-{i}", "question": f"Q: {light_edit(e['question'], rng)}\n{options_text(e, rng)}",
               "answer": e["answer"], "_source": e["question"]}
              for i, e in enumerate(edited_items)]
    return verbatim, edited, verbatim_items + edited_items


def recipe(train, **params) -> dict:
    return {
        "name": "decontam",
        "inputs": [{"builder": "table", "path": str(train), "source": "train",
                    "columns": {"id": "id", "user": "question", "assistant": "answer"}}],
        "steps": [{"decontaminate": {"eval_sets": [str(D / "medqa_eval.jsonl")], **params}}],
        "output": {"formats": ["jsonl"]},
    }


def test_edits_are_light_and_break_every_13gram():
    verbatim, edited, _ = planted_rows()
    assert len(verbatim) == 20 and len(edited) == 20
    for row in edited:
        src, copy = normalize_words(row["_source"]), normalize_words(row["question"].split("\n")[0])[1:]
        same = sum(b.size for b in difflib.SequenceMatcher(None, src, copy, autojunk=False).get_matching_blocks())
        assert len(src) - same <= 0.15 * len(src), row["id"]
    # no 13-gram survives in most edited copies: the exact rule alone cannot catch them
    index = ContaminationIndex(13, 6, 5)
    from meddata.exams import load_exam

    for item in load_exam(D / "medqa_eval.jsonl"):
        index.add("medqa", item, ["question"])
    exact_only = sum(bool(index.match(r["question"], None)) for r in edited)
    assert exact_only <= 5


def test_acceptance_40_planted_copies_removed_clean_rows_survive(build, tmp_path):
    verbatim, edited, items = planted_rows()
    rows = [{k: v for k, v in r.items() if not k.startswith("_")} for r in CLEAN + verbatim + edited]
    random.Random(1).shuffle(rows)
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    res = build(recipe(train))
    step = res.steps[-1]
    assert step.dropped == {"contaminated": 40}
    kept = {r["id"].split(":", 1)[1] for r in read_jsonl(res.out_dir / "jsonl" / "train.jsonl")}
    assert kept == {r["id"] for r in CLEAN}
    logged = read_jsonl(res.out_dir / "dropped" / "01-decontaminate.jsonl")
    assert {d["id"].split(":", 1)[1] for d in logged} == {r["id"] for r in verbatim + edited}
    assert {d["reason"] for d in logged} == {"contaminated"}

    report = step.report
    assert report["rows_flagged"] == 40 and report["items_hit"] == 40
    assert report["eval_sets"][0]["items"] == 200 and report["eval_sets"][0]["items_hit"] == 40
    hits = {h["example_rows"][0].split(":", 1)[1]: h for h in report["hits"]}
    assert all(hits[f"verbatim-{i}"]["rule"] == "ngram" for i in range(10, 20))  # the 25+ word ones
    assert sum(hits[f"edited-{i}"]["rule"] == "coverage" for i in range(20)) >= 15
    eval_lines = {e["question"]: n for n, e in enumerate(EVAL, start=1)}
    expected = {f"medqa:medqa_eval.jsonl line {eval_lines[e['question']]}" for e in items}
    assert {h["item_id"] for h in report["hits"]} == expected
    saved = json.loads(res.stats_path.read_text())
    assert saved["steps"][-1]["report"]["items_hit"] == 40


def test_annotate_mode_flags_and_keeps(build, tmp_path):
    verbatim, edited, _ = planted_rows()
    rows = [{k: v for k, v in r.items() if not k.startswith("_")} for r in CLEAN[:30] + verbatim[:5] + edited[:5]]
    res = build(recipe(write_jsonl(tmp_path / "train.jsonl", rows), mode="annotate"))
    assert res.totals["out"] == 40 and res.totals["dropped"] == 0
    flagged = {}
    for r in read_jsonl(res.out_dir / "jsonl" / "train.jsonl"):
        ann = json.loads(r["meta"]["annotations"])
        if "decontaminate" in ann:
            flagged[r["id"].split(":", 1)[1]] = ann["decontaminate"]
    assert set(flagged) == {r["id"] for r in verbatim[:5] + edited[:5]}
    for v in flagged.values():
        assert v["items"][0].startswith("medqa:") and v["rule"] in ("ngram", "whole", "coverage")
        assert v["rule"] != "coverage" or v["max_coverage"] >= 0.7


def test_pubmedqa_and_mmlu_eval_sets(tmp_path):
    from meddata.exams import load_exam
    from meddata.records import messages, new_row

    pubmed = load_exam(D / "pubmedqa_sample.json")
    mmlu = load_exam(D / "clinical_knowledge_test.csv")
    abstract = pubmed[3].context.split("\n")[0]
    long_mmlu = next(i for i in mmlu if len(i.question.split()) >= 15)
    rows = [
        new_row(source="t", id="abstract", meta={"builder": "t"}, text=f"From the literature: {abstract}"),
        new_row(source="t", id="mmlu", meta={"builder": "t"},
                messages=messages(("user", long_mmlu.question), ("assistant", long_mmlu.answer_text))),
        new_row(source="t", id="clean", meta={"builder": "t"}, text=CLEAN[-1]["answer"]),
    ]
    from datasets import Dataset

    from meddata.records import BASE_FEATURES

    ds = Dataset.from_list(rows, features=BASE_FEATURES)
    step = Decontaminate(eval_sets=[{"path": str(D / "pubmedqa_sample.json"), "name": "pubmedqa"},
                                    {"path": str(D / "clinical_knowledge_test.csv"), "format": "mmlu"}])
    ctx = StepContext(step_dir=tmp_path)
    step.ensure_setup(ctx)
    result = step.apply(ds, ctx)
    assert result.kept["id"] == ["clean"]
    assert sorted(result.dropped["id"]) == ["abstract", "mmlu"]
    hit_sets = {h["eval_set"]: h["item_id"] for h in result.report["hits"]}
    assert hit_sets == {"pubmedqa": pubmed[3].id, "clinical_knowledge_test.csv": long_mmlu.id}


def test_exam_boilerplate_is_not_contamination(tmp_path):
    """'Which of the following is not a ...' stems shared with an eval item are not a hit."""
    from meddata.exams import load_exam

    index = ContaminationIndex(13, 6, 5)
    items = load_exam(D / "medqa_eval.jsonl")
    for item in items:
        index.add("medqa", item, ["question"])
    index.prune()
    stems = [i.question for i in items if i.question.lower().startswith("which of the following is not")]
    assert stems
    probe = "Which of the following is not a branch of the facial nerve in the parotid gland?"
    assert not any(probe == s for s in stems)
    assert index.match(probe, 0.5) == {}


def test_bad_eval_sets_are_clear_errors(build, tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", [{"id": "1", "question": "q", "answer": "a"}])
    with pytest.raises(RecipeError) as err:
        build({**recipe(train), "steps": [{"decontaminate": {"eval_sets": ["missing/medqa.jsonl"]}}]})
    assert "eval_sets.0.path" in str(err.value) and "file not found" in str(err.value)
    broken = tmp_path / "medqa_broken.jsonl"
    good = EVAL[0]
    broken.write_text(json.dumps(good) + "\n" + json.dumps({**good, "answer_idx": "Z"}) + "\n{not json\n",
                      encoding="utf-8")
    step = Decontaminate(eval_sets=[str(broken)])
    step.ensure_setup(StepContext(step_dir=tmp_path))
    info = step._sets[0]
    assert info["items"] == 1 and info["skipped"] == 2
    assert any("line 2" in s and "answer_idx" in s for s in info["skipped_examples"])
    empty = tmp_path / "medqa_empty.jsonl"
    empty.write_text("{not json\n", encoding="utf-8")
    # a setup error names the step, as one user-facing error
    with pytest.raises(StepSetupError, match="step 'decontaminate' could not set up: .*no readable items"):
        Decontaminate(eval_sets=[str(empty)]).ensure_setup(StepContext(step_dir=tmp_path))


def test_short_items_need_the_whole_question():
    """A short item is a hit only when all of it is there; a sentence on the same topic is not."""
    from meddata.exams import load_exam

    items = load_exam(D / "medqa_eval.jsonl")
    index = ContaminationIndex(13, 6, 5, coverage_min_words=10)
    for item in items:
        index.add("medqa", item, ["question"])
    index.prune()
    short = next(i for i in items if 8 <= len(normalize_words(i.question)) < 13
                 and sum(w.isalpha() and len(w) > 3 for w in normalize_words(i.question)) >= 3)
    found = index.match(f"Revision notes. {short.question} Answer: see chapter 4.", None)
    assert [(index.items[k].id, rule) for k, (rule, _) in found.items()] == [(short.id, "whole")]
    words = short.question.split()
    assert index.match(" ".join(words[:-2]) + " and more", 0.7) == {}


def _many_rows(tmp_path, copies: int = 25):
    """The acceptance rows, the clean ones repeated under new ids: several row ranges."""
    verbatim, edited, _ = planted_rows()
    clean = [{**r, "id": f"{r['id']}-{k}"} for k in range(copies) for r in CLEAN]
    rows = [{k: v for k, v in r.items() if not k.startswith("_")} for r in clean + verbatim + edited]
    random.Random(2).shuffle(rows)
    return write_jsonl(tmp_path / "train.jsonl", rows), len(rows)


def _outcome(res) -> tuple:
    step = res.steps[-1]
    logged = read_jsonl(res.out_dir / "dropped" / "01-decontaminate.jsonl")
    return step.dropped, step.report, logged, read_jsonl(res.out_dir / "jsonl" / "train.jsonl")


def test_row_ranges_in_worker_processes_match_one_process(build, tmp_path):
    """Rows are matched a range at a time in forked workers (the index is inherited, not
    copied); the decisions, the drop log and the report (its example rows are the first rows
    in order) equal the one-process run."""
    train, n = _many_rows(tmp_path)
    assert n > 2 * 2000  # more than one row range per worker
    one = _outcome(build(recipe(train), out=tmp_path / "one", num_proc=1))
    two = _outcome(build(recipe(train), out=tmp_path / "two", num_proc=2))
    assert one == two and one[0] == {"contaminated": 40}


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory):
    pytest.importorskip("ray")
    from ray_cluster import two_node_cluster

    with two_node_cluster(tmp_path_factory.mktemp("ray")) as address:
        yield address


def test_on_a_ray_cluster_the_index_is_broadcast_and_rows_matched_in_tasks(build, tmp_path, two_nodes):
    train, _ = _many_rows(tmp_path, copies=4)
    local = build(recipe(train), out=tmp_path / "local", num_proc=2)
    on_ray = build(recipe(train), out=tmp_path / "ray", num_proc=2, engine="ray", engine_options={"address": two_nodes})
    assert _outcome(on_ray) == _outcome(local) and local.steps[-1].dropped == {"contaminated": 40}
    assert on_ray.steps[-1].counters["decontam.ray_tasks"] > 0  # matched by Ray tasks, not a local fallback
    assert "decontam.ray_tasks" not in local.steps[-1].counters
