"""The Ray engine on a real two-node Ray cluster on 127.0.0.1 (``ray start --head`` plus a
second ``ray start --address`` with its own CPU), started and stopped by the fixture: kept
ids and rows are identical to the local engine's, on an example recipe and on a recipe with
every global step."""

from __future__ import annotations

import datasets
import pytest
from ray_cluster import two_node_cluster
from testutil import EXAMPLES

from meddata import pipeline, recipe

pytest.importorskip("ray")

QUICKSTART = EXAMPLES / "recipes" / "quickstart.yaml"
EVERY_GLOBAL = {
    "name": "every-global",
    "seed": 3,
    "inputs": [
        {"builder": "table", "path": "data/medquad_sample.jsonl", "source": "medquad",
         "columns": {"id": "{source}-{qid}", "user": "question", "assistant": "answer"}},
        {"builder": "table", "path": "data/chatdoctor_sample.json", "source": "chatdoctor",
         "columns": {"user": "input", "assistant": "output"}},
    ],
    "steps": [
        "normalize_text",
        {"length_filter": {"min_chars": 40}},
        {"exact_dedup": {"normalize": True}},
        {"minhash_dedup": {"threshold": 0.7}},
        {"decontaminate": {"eval_sets": ["data/curation/medqa_eval_sample.jsonl"]}},
        {"mix": {"weights": {"medquad": 0.6, "chatdoctor": 0.4}, "total": 200}},
        {"split": {"ratios": {"train": 0.8, "test": 0.2}}},
    ],
    "output": {"card": False},
}


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory):
    with two_node_cluster(tmp_path_factory.mktemp("ray")) as address:
        yield address


def _splits(result) -> dict[str, list[dict]]:
    dd = datasets.load_from_disk(str(result.dataset_dir))
    return {name: list(part) for name, part in dd.items()}


@pytest.mark.parametrize("make", [lambda: recipe.load(QUICKSTART),
                                  lambda: recipe.from_dict(EVERY_GLOBAL, base_dir=EXAMPLES, source="every-global.yaml")],
                         ids=["quickstart", "every-global-step"])
def test_two_node_cluster_builds_what_the_local_engine_builds(tmp_path, two_nodes, make):
    import ray

    local = pipeline.run(make(), tmp_path / "local", num_proc=2)
    on_ray = pipeline.run(make(), tmp_path / "ray", engine="ray", num_proc=2, engine_options={"address": two_nodes})
    assert ray.is_initialized() and len([n for n in ray.nodes() if n["Alive"]]) == 2
    assert on_ray.totals == local.totals
    assert [(s.name, s.rows_in, s.rows_out, s.dropped) for s in on_ray.steps] == \
           [(s.name, s.rows_in, s.rows_out, s.dropped) for s in local.steps]
    assert _splits(on_ray) == _splits(local)
    assert local.totals["out"] > 0
    on_ray_split, local_split = (next((s for s in run.steps if s.name == "split"), None) for run in (on_ray, local))
    if on_ray_split is not None:  # two nodes: the global steps fanned out as Ray tasks
        assert on_ray_split.counters["split.ray_tasks"] > 0 and "split.ray_tasks" not in local_split.counters


def test_llm_steps_on_the_cluster_share_one_rate_budget_and_one_cache(tmp_path, two_nodes):
    """Two workers on two nodes each run a shard of an LLM step: the recipe's rpm holds for the
    cluster (one budget, a named actor), not per worker, and both write one cache file."""
    import shutil

    from llm_server import LLMServer
    from testutil import DATA, read_jsonl, write_jsonl

    rpm = 240  # 4 requests/s, bursts of one second's worth (4)
    rows = read_jsonl(DATA / "llm" / "openstax_passages.jsonl")
    write_jsonl(tmp_path / "passages.jsonl", [{**r, "id": f"{r['id']}-{k}", "text": f"{r['text']} (Copy {k + 1}.)"}  # distinct requests
                                              for k in range(2) for r in rows])
    server = LLMServer().start()
    try:
        data = {"name": "budget",
                "llms": {"local": {"model": "fake-med", "base_url": server.url, "cache": "cache.sqlite", "rpm": rpm}},
                "inputs": [{"builder": "table", "path": "passages.jsonl", "columns": {"id": "id", "text": "text"}}],
                "steps": [{"passage_qa": {"llm": "local", "per_passage": 1, "batch_size": 8}}],
                "output": {"card": False}}
        result = pipeline.run(recipe.from_dict(data, base_dir=tmp_path, source="budget.yaml"), tmp_path / "out",
                              engine="ray", num_proc=2, engine_options={"address": two_nodes})
        assert result.steps[-1].rows_out == 32 and result.steps[-1].quarantined == 0
        times = sorted(e["t"] for e in server.chat_log())
        assert len(times) == 32
        # One budget: 32 requests need (32 - capacity) / rate = 7 s of tokens. One budget per
        # worker (16 requests each) would need 3 s. The first requests of each worker arrive
        # late (connections, imports), which shortens the span seen here by up to a second or two.
        assert times[-1] - times[0] >= 5.0, times[-1] - times[0]
        assert (tmp_path / "cache.sqlite").exists()  # resolved in the driver, not in each worker's folder
        server.reset_log()
        shutil.rmtree(tmp_path / "out")
        again = pipeline.run(recipe.from_dict(data, base_dir=tmp_path, source="budget.yaml"), tmp_path / "out",
                             engine="ray", num_proc=2, engine_options={"address": two_nodes})
        assert again.steps[-1].rows_out == 32 and server.chat_log() == []  # both workers' answers are cached
    finally:
        server.stop()
