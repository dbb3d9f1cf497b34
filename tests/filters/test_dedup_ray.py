"""exact_dedup and minhash_dedup on a real two-node Ray cluster (``StepContext.executor == "ray"``):
the same clusters, kept rows, drop notes and report numbers as the local path, with the work
done by Ray tasks on both nodes; and the distributed connected components against scipy.

Data: real QA answers (MedQuAD, ChatDoctor; the full sets in ../shared/data when present,
else the bundled samples) with planted exact copies (case and spacing changed) and near
copies (one word in about fifty replaced), stored as a memory-mapped Arrow shard."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset
from meddata.filters.dedup import ExactDedup, MinHashDedup
from meddata.filters.forked import LazyContents
from ray_cluster import two_node_cluster
from testutil import EXAMPLES, SHARED, read_jsonl

from meddata.records import BASE_FEATURES, new_meta, new_row
from meddata.steps import StepContext

ray = pytest.importorskip("ray")
from meddata.engine import ray_ops  # noqa: E402 (needs ray)


def real_answers(limit: int) -> list[str]:
    """Distinct real QA answers: MedQuAD and ChatDoctor (full sets when present)."""
    if (SHARED / "medquad" / "medquad.jsonl").exists():
        medquad = read_jsonl(SHARED / "medquad" / "medquad.jsonl")
        chatdoctor = json.loads((SHARED / "chatdoctor-genmedgpt5k" / "chatdoctor5k.json").read_text())
    else:
        medquad = read_jsonl(EXAMPLES / "data" / "medquad_sample.jsonl")
        chatdoctor = json.loads((EXAMPLES / "data" / "chatdoctor_sample.json").read_text())
    answers = [r["answer"] for r in medquad[: limit * 2 // 3]] + [r["output"] for r in chatdoctor[: limit // 3]]
    answers = list(dict.fromkeys(a for a in answers if a.strip()))
    if len(answers) < limit:  # the bundled samples only: resample their real sentences, as scale.py does
        sentences = sorted({x for a in answers for x in re.split(r"(?<=[.!?])\s+", a) if len(x.split()) >= 4})
        rng = random.Random(7)
        while len(answers) < limit:
            answers.append(" ".join(rng.sample(sentences, rng.randint(3, 8))))
        answers = list(dict.fromkeys(answers))
    return answers


def planted_rows(limit: int, seed: int = 0) -> list[dict]:
    """Real answers plus exact copies (other case and spacing) and near copies, each row with
    a patient id (copies sometimes under the same patient, sometimes not)."""
    rng = random.Random(seed)
    answers = real_answers(limit)
    meta = new_meta(builder="test")
    rows = [new_row(source="qa", meta={**meta, "patient_id": f"p{i % 40}"}, id=f"r{i}", text=a)
            for i, a in enumerate(answers)]
    for k in range(len(answers) // 10):
        i = rng.randrange(len(answers))
        rows.append(new_row(source="qa", meta={**meta, "patient_id": f"p{rng.choice([i, k]) % 40}"}, id=f"exact{k}",
                            text="  " + answers[i].upper().replace(" ", "  ")))
        words = answers[rng.randrange(len(answers))].split()
        for _ in range(max(1, len(words) // 50)):
            words[rng.randrange(len(words))] = rng.choice(["fever", "dose", "renal", "the"])
        rows.append(new_row(source="qa", meta=dict(meta), id=f"near{k}", text=" ".join(words)))
    rng.shuffle(rows)
    return rows


def mapped(rows: list[dict], folder: Path) -> Dataset:
    """The rows as a dataset over one memory-mapped Arrow shard, as the runner hands it to a step."""
    import pyarrow as pa

    table = (Dataset.from_list(rows, features=BASE_FEATURES) if rows else
             Dataset.from_dict({name: [] for name in BASE_FEATURES}, features=BASE_FEATURES)).data.table
    folder.mkdir(parents=True, exist_ok=True)
    with pa.OSFile(str(folder / "shard-00000.arrow"), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return Dataset.from_file(str(folder / "shard-00000.arrow"))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with two_node_cluster(tmp_path_factory.mktemp("ray")) as address:
        yield address


@pytest.fixture(scope="module")
def qa(tmp_path_factory) -> Dataset:
    return mapped(planted_rows(3000), tmp_path_factory.mktemp("qa"))


def run_both(step_cls, params: dict, ds: Dataset, tmp_path: Path):
    """The step's result on the local path (2 forked workers) and on the Ray path."""
    out = []
    for executor in ("local", "ray"):
        ctx = StepContext(step_dir=tmp_path / executor, num_proc=2, executor=executor)
        out.append(step_cls(params).apply(ds, ctx))
    return out


def assert_same_decisions(local, on_ray, differ: tuple[str, ...] = ()) -> None:
    assert on_ray.reasons == local.reasons
    assert on_ray.drop_notes == local.drop_notes
    assert {k: v for k, v in on_ray.report.items() if k not in differ} == \
           {k: v for k, v in local.report.items() if k not in differ}


def ray_task_nodes() -> set[str]:
    return {node for node, count in ray_ops.TASK_NODES.items() if count}


@pytest.mark.parametrize(("params", "at_least"), [
    ({"normalize": True}, 250),  # ~300 planted copies (case and spacing changed)
    ({"normalize": True, "scope": "patient", "keep": "longest"}, 100),  # about half under the same patient
    # the corpus's own repeated answers only (MedQuAD repeats some; the bundled samples may not)
    ({"normalize": ["whitespace"], "fields": ["text"]}, 1 if SHARED.is_dir() else 0),
], ids=["normalize-all", "patient-scope-longest", "whitespace-only"])
def test_exact_dedup_on_ray_decides_what_the_local_path_decides(cluster, qa, tmp_path, params, at_least):
    ray_ops.TASK_NODES.clear()
    local, on_ray = run_both(ExactDedup, params, qa, tmp_path)
    assert_same_decisions(local, on_ray)
    assert local.report["exact_duplicate"] >= at_least
    alive = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    assert len(alive) == 2 and ray_task_nodes() == alive  # the tasks ran on both nodes


@pytest.mark.parametrize("params", [{"threshold": 0.8}, {"threshold": 0.7, "ngram": 3, "scope": "patient"},
                                    {"threshold": 0.8, "verify": False}],
                         ids=["word", "word-patient-scope", "unverified"])
def test_minhash_dedup_on_ray_decides_what_the_local_path_decides(cluster, qa, tmp_path, params):
    ray_ops.TASK_NODES.clear()
    local, on_ray = run_both(MinHashDedup, params, qa, tmp_path)
    # verified_pairs counts differently by design (see NearDupResult); everything else is equal
    assert_same_decisions(local, on_ray, differ=("verified_pairs",))
    assert local.report["near_duplicate"] > 50 and local.report["accepted_pairs"] > 0
    assert len(ray_task_nodes()) == 2
    assert not list((tmp_path / "ray").glob("minhash-ray-*"))  # the sketch folder is removed


def test_minhash_char_ngrams_on_ray(cluster, tmp_path):
    ds = mapped(planted_rows(900, seed=1), tmp_path / "ds")
    local, on_ray = run_both(MinHashDedup, {"unit": "char", "ngram": 5, "threshold": 0.75}, ds, tmp_path)
    assert_same_decisions(local, on_ray, differ=("verified_pairs",))
    assert local.report["near_duplicate"] > 20


def test_the_rows_travel_as_file_paths_not_texts(qa):
    """What every task receives: the dataset pickles as its shard's path, not its texts."""
    shard = Path(qa.cache_files[0]["filename"])
    assert shard.stat().st_size > 1_000_000
    assert len(ray.cloudpickle.dumps(LazyContents(qa, None))) < 20_000
    restored = ray.cloudpickle.loads(ray.cloudpickle.dumps(LazyContents(qa, None)))
    assert restored[5:8] == LazyContents(qa, None)[5:8]


@pytest.mark.parametrize("texts", [[], ["", "   ", "\n"]], ids=["no-rows", "all-empty"])
@pytest.mark.parametrize("step_cls", [ExactDedup, MinHashDedup])
def test_no_rows_and_empty_rows(cluster, tmp_path, texts, step_cls):
    meta = new_meta(builder="test")
    rows = [new_row(source="qa", meta=dict(meta), id=f"r{i}", text=t) for i, t in enumerate(texts)]
    ds = mapped(rows, tmp_path / "ds")
    local, on_ray = run_both(step_cls, {"scope": "patient"}, ds, tmp_path)
    assert_same_decisions(local, on_ray)
    assert on_ray.reasons == ["empty_text"] * len(texts)


def test_a_shard_the_workers_cannot_open_is_one_clear_error(cluster, tmp_path):
    """The input must be on a path every node sees: a shard missing where a task runs is a
    FileNotFoundError naming it in the caller, not Ray's wrapped remote traceback."""
    ds = mapped(planted_rows(60), tmp_path / "ds")
    Path(ds.cache_files[0]["filename"]).unlink()  # still mapped here, gone for the workers
    with pytest.raises(FileNotFoundError, match="shard-00000.arrow"):
        ExactDedup({}).apply(ds, StepContext(step_dir=tmp_path / "step", executor="ray"))


def random_graph(rng: np.random.Generator, n: int) -> np.ndarray:
    """Long chains over randomly numbered nodes (paths of up to n/10 nodes), a few stars,
    random extra edges, and isolated nodes."""
    perm = rng.permutation(n)
    edges, pos = [], 0
    while pos < n * 6 // 10:
        length = int(rng.integers(2, n // 10))
        path = perm[pos:pos + length]
        edges.append(np.stack((path[:-1], path[1:]), axis=1))
        pos += length
    hubs = perm[pos:pos + 5]
    leaves = perm[pos + 5:pos + 200]
    edges.append(np.stack((hubs[np.arange(len(leaves)) % 5], leaves), axis=1))
    edges.append(rng.integers(0, n, size=(n // 50, 2)))
    return np.concatenate(edges)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_min_label_components_match_scipy(cluster, seed):
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    rng = np.random.default_rng(seed)
    n = 20_000
    edges = random_graph(rng, n)
    rng.shuffle(edges)
    found = ray_ops.components(n, np.array_split(edges, 4))
    count, expected = connected_components(coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n)),
                                           directed=False)
    assert found.count == count
    # the same partition: each scipy component maps to one label and back
    pairs = np.unique(np.stack((expected, found.labels), axis=1), axis=0)
    assert len(pairs) == count
    # labels are the smallest member of each component
    smallest = np.full(count, n)
    np.minimum.at(smallest, expected, np.arange(n))
    assert np.array_equal(found.labels, smallest[expected])
    # pointer jumping keeps the rounds logarithmic even for chains of n/10 nodes (7 or 8 here,
    # the same at 200,000 nodes; one label per round would need thousands)
    assert found.rounds <= int(np.log2(n)), found.rounds


def test_components_of_a_single_sorted_chain_in_few_rounds(cluster):
    n = 5000
    chain = np.stack((np.arange(n - 1), np.arange(1, n)), axis=1)[::-1].copy()
    found = ray_ops.components(n, [chain[: n // 2], chain[n // 2:]])
    assert found.count == 1 and not found.labels.any() and found.rounds <= 3


@pytest.mark.parametrize("step_cls", [ExactDedup, MinHashDedup])
def test_a_whole_step_run_as_a_ray_task_fans_out_from_there(cluster, qa, tmp_path, step_cls):
    """The runner may run a global step itself as a Ray task: its tasks are then nested."""
    params = {"scope": "patient"}
    local = step_cls(params).apply(qa, StepContext(step_dir=tmp_path / "local", num_proc=2))
    in_task = ray.remote(lambda step, ds, ctx: step.apply(ds, ctx))  # a lambda travels by value
    on_ray = ray.get(in_task.remote(step_cls(params), qa, StepContext(step_dir=tmp_path / "ray", executor="ray")))
    assert_same_decisions(local, on_ray, differ=("verified_pairs",))
