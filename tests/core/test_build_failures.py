"""Failures that used to look like success: each reproduced first, then fixed.

0 rows through every step; an unreachable LLM server; every row quarantined; 0 rows out;
raw-PHI scratch left behind by killed runs; duplicate ids from a builder."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from llm_server import LLMServer
from testutil import DATA, EXAMPLES, ROOT, read_jsonl, write_jsonl

from meddata.engine.sink import UNREACHABLE_AFTER
from meddata.errors import UserError
from meddata.pipeline import BuildFailed, DuplicateIdError, remove_stale_raw

MEDQUAD = EXAMPLES / "data" / "medquad_sample.jsonl"
PASSAGES = DATA / "llm" / "openstax_passages.jsonl"
EVERY_KIND = ["normalize_text", {"length_filter": {"min_chars": 10}}, "repetition_filter", "exact_dedup",
              {"minhash_dedup": {"threshold": 0.8}}, {"split": {"ratios": {"train": 0.8, "test": 0.2}}}]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _passages(path: Path, copies: int) -> Path:
    """``copies`` x the 16 real passages, each with its own id."""
    rows = read_jsonl(PASSAGES)
    return write_jsonl(path, [{**r, "id": f"{r['id']}-{k}"} for k in range(copies) for r in rows])


def _llm_recipe(src: Path, url: str, cache: Path, **llm) -> dict:
    return {
        "name": "llm-fail",
        "llms": {"local": {"model": "fake-med", "base_url": url, "cache": str(cache), "max_retries": 0,
                           "timeout": 5, **llm}},
        "inputs": [{"builder": "table", "path": str(src), "columns": {"id": "id", "text": "text"}}],
        "steps": [{"passage_qa": {"llm": "local", "per_passage": 1}}],
        "output": {"card": False},
    }


@pytest.mark.parametrize("content", [b"", b"\x00\x01\x02\xff\xfe binary\n"])
def test_no_rows_flow_through_every_kind_of_step_and_fail_the_build_clearly(tmp_path, build, content):
    src = tmp_path / "empty.jsonl"
    src.write_bytes(content)
    data = {"name": "empty", "inputs": [{"builder": "table", "path": str(src),
                                         "columns": {"user": "question", "assistant": "answer"}}],
            "steps": EVERY_KIND, "output": {"card": False, "max_quarantine_rate": 1.0}}
    with pytest.raises(BuildFailed, match=r"the build produced 0 rows; no rows left after step 0 'table'"):
        build(data, strict=True)
    stats = yaml.safe_load((tmp_path / "out" / "stats.json").read_text())
    assert [s["name"] for s in stats["steps"]] == ["table", "normalize_text", "length_filter", "repetition_filter",
                                                   "exact_dedup", "minhash_dedup", "split"]
    assert all(s["rows_in"] == 0 and s["rows_out"] == 0 for s in stats["steps"][1:])


def test_cli_exits_non_zero_with_one_line_when_every_row_is_quarantined(tmp_path):
    recipe = {"name": "typo", "inputs": [{"builder": "table", "path": str(MEDQUAD),
                                         "columns": {"user": "questoin", "assistant": "answer"}}],
              "steps": ["normalize_text"], "output": {"card": False}}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    proc = subprocess.run([str(Path(sys.executable).parent / "meddata"), "build", str(path), "--out",
                           str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, proc.stderr[-2000:]
    assert "step 0 'table' quarantined" in errors[0] and "max_quarantine_rate" in errors[0]
    assert "Traceback" not in proc.stderr


def test_quarantine_rate_is_a_recipe_setting(tmp_path, build):
    data = {"name": "typo", "inputs": [{"builder": "table", "path": str(MEDQUAD),
                                       "columns": {"user": "questoin", "assistant": "answer"}}],
            "output": {"card": False, "max_quarantine_rate": 0.4}}
    with pytest.raises(BuildFailed, match=r"step 0 'table' quarantined [\d,]+ of [\d,]+ rows .*0\.4"):
        build(data, strict=True)


def test_unreachable_llm_stops_the_build_and_a_rerun_sends_what_was_not_answered(tmp_path, build):
    src = _passages(tmp_path / "passages.jsonl", 3)  # 48 rows: more than UNREACHABLE_AFTER
    port = _free_port()
    url = f"http://127.0.0.1:{port}/v1"
    data = _llm_recipe(src, url, tmp_path / "cache.sqlite")
    with pytest.raises(UserError, match=rf"cannot reach llms\.local at {url}"):
        build(data)
    server = LLMServer(port=port).start()
    try:
        result = build(data)
        step = result.steps[-1]
        assert not step.reused
        assert step.quarantined == 0 and step.rows_out == 48
        assert len(server.chat_log()) == 16  # 3 copies of 16 passages: one request each
        again = build(data)
        assert again.steps[-1].reused
    finally:
        server.stop()


def test_many_failures_in_a_row_stop_the_build_before_the_rest_is_sent(tmp_path, build):
    src = _passages(tmp_path / "passages.jsonl", 5)  # 80 rows
    url = f"http://127.0.0.1:{_free_port()}/v1"
    data = _llm_recipe(src, url, tmp_path / "cache.sqlite", max_concurrency=4)
    data["steps"][0]["passage_qa"]["llm"] = "local"
    from meddata import pipeline, recipe
    from meddata.engine.sink import ServiceUnreachable

    rec = recipe.from_dict(data, base_dir=ROOT, source="t.yaml")
    rec.steps[0].batch_size = 8  # batches smaller than the limit: the stop comes mid-step
    with pytest.raises(ServiceUnreachable, match=rf"cannot reach llms\.local at {url}: {UNREACHABLE_AFTER} rows in a row"):
        pipeline.run(rec, tmp_path / "out")
    assert not list((tmp_path / "out" / ".work").glob("*passage_qa*/DONE"))


def test_transport_failures_of_some_rows_are_retried_on_the_next_run(tmp_path, build):
    server = LLMServer().start()
    try:
        server.add_fault("500", count=3)
        data = _llm_recipe(PASSAGES, server.url, tmp_path / "cache.sqlite")
        with pytest.raises(BuildFailed, match=r"step 1 'passage_qa': cannot reach llms\.local .* for 3 of 16 rows"):
            build(data, strict=True)
        q = read_jsonl(tmp_path / "out" / "quarantine.jsonl")
        assert len(q) == 3 and all(e["retry"] == "llms.local" for e in q)
        server.reset_log()
        result = build(data)
        assert not result.steps[-1].reused and result.steps[-1].quarantined == 0
        assert len(server.chat_log()) == 3  # the 13 answered requests come from the cache
        assert not (tmp_path / "out" / "quarantine.jsonl").read_text()
    finally:
        server.stop()


def test_duplicate_ids_name_the_builder_and_an_example(tmp_path, build):
    # A source id that repeats inside one input is made unique by the builder (and counted);
    # the same rows read by two inputs is a recipe mistake the runner refuses, naming the input.
    rows = read_jsonl(PASSAGES)
    src = write_jsonl(tmp_path / "dup.jsonl", [*rows, rows[3]])
    data = {"name": "dup", "inputs": [{"builder": "table", "path": str(src), "columns": {"id": "id", "text": "text"}}]}
    result = build(data)
    assert result.steps[0].rows_out == len(rows) + 1
    assert result.steps[0].counters.get("ids.repeated_source_id") == 1
    two = {"name": "dup2", "inputs": [{"builder": "table", "path": str(PASSAGES), "columns": {"id": "id", "text": "text"}},
                                      {"builder": "table", "path": str(PASSAGES), "columns": {"id": "id", "text": "text"}}]}
    with pytest.raises(DuplicateIdError, match=r"inputs\[1\] 'table': 16 ids were already produced by an earlier input"):
        build(two)


def _raw_llm_build(tmp_path: Path, server: LLMServer) -> tuple[subprocess.Popen, Path]:
    data = _llm_recipe(PASSAGES, server.url, tmp_path / "cache.sqlite", max_concurrency=1)
    data["inputs"][0]["phi_status"] = "raw"
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    proc = subprocess.Popen([str(Path(sys.executable).parent / "meddata"), "build", str(path), "--out", str(out)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list((out / ".work").glob(".raw-*/*passage_qa*/data")):
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        assert time.monotonic() < deadline, "the build never reached the LLM step"
        time.sleep(0.05)
    time.sleep(0.5)
    return proc, out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_raw_phi_scratch_is_private_and_removed_when_the_build_is_stopped(tmp_path, sig):
    server = LLMServer(latency=0.3).start()
    try:
        proc, out = _raw_llm_build(tmp_path, server)
        (raw,) = (out / ".work").glob(".raw-*")
        assert stat.S_IMODE(raw.stat().st_mode) == 0o700
        assert list(raw.rglob("*.arrow"))  # the raw rows are there while the build runs
        proc.send_signal(sig)
        proc.wait(60)
        proc.stderr.close()
        assert proc.returncode != 0
        assert not raw.exists()
    finally:
        server.stop()


def test_raw_phi_scratch_of_a_killed_run_is_removed_at_the_next_start(tmp_path):
    server = LLMServer(latency=0.3).start()
    try:
        proc, out = _raw_llm_build(tmp_path, server)
        (raw,) = (out / ".work").glob(".raw-*")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(60)
        proc.stderr.close()
        assert raw.exists() and list(raw.rglob("*.arrow"))  # SIGKILL leaves it behind...
        assert remove_stale_raw(out / ".work") == [raw]  # ...and the next run's start removes it
        assert not raw.exists()
    finally:
        server.stop()


def test_python_api_raises_on_a_failed_build_unless_asked_for_the_result(tmp_path, build):
    """``pipeline.run`` fails as ``meddata build`` does; ``strict=False`` hands the result back."""
    data = {"name": "nothing_left", "inputs": [{"builder": "table", "path": str(MEDQUAD),
                                                "columns": {"user": "question", "assistant": "answer"}}],
            "steps": [{"length_filter": {"min_chars": 10**9}}], "output": {"card": False}}
    from meddata import pipeline, recipe

    with pytest.raises(BuildFailed, match=r"the build produced 0 rows; no rows left after step 1 'length_filter'") as err:
        pipeline.run(recipe.from_dict(data, base_dir=ROOT, source="t.yaml"), tmp_path / "out")  # the default
    assert err.value.result is not None and err.value.result.totals["out"] == 0
    result = build(data, strict=False)
    assert not result.ok and result.problems[0].startswith("the build produced 0 rows")
    assert (tmp_path / "out" / "stats.json").exists()


def test_counts_that_do_not_add_up_are_one_clear_error(tmp_path):
    """A step that loses rows without accounting for them: one line for the CLI (a UserError)
    naming the step and the counts (it used to say the step "does not declare creates_rows")."""
    from meddata import pipeline, recipe
    from meddata.steps import GlobalResult, GlobalStep

    class LosesRows(GlobalStep):
        name = "loses_rows"

        def apply(self, dataset, ctx):  # half vanish, neither kept nor dropped
            return GlobalResult(kept=dataset.select(range(len(dataset) // 2)))

    rec = recipe.from_dict({"name": "lossy", "inputs": [{"builder": "table", "path": str(MEDQUAD),
                                                         "columns": {"user": "question", "assistant": "answer"}}],
                            "output": {"card": False}}, base_dir=ROOT, source="t.yaml")
    rec.steps = [LosesRows()]
    with pytest.raises(pipeline.ConservationError) as err:
        pipeline.run(rec, tmp_path / "out")
    message = str(err.value)
    assert isinstance(err.value, UserError) and "\n" not in message
    assert message.startswith("step 1 'loses_rows' lost 150 rows: 300 in, 0 dropped, 0 quarantined, 150 out")
