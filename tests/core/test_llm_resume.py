"""Crash and resume: a build killed with SIGKILL during augmentation, run again, completes
without re-sending a single request whose answer was already in the cache."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from llm_server import LLMServer
from testutil import DATA, ROOT, read_jsonl

PASSAGES = DATA / "llm" / "openstax_passages.jsonl"


def messages_sha(messages: list[dict]) -> str:
    """The server's hash of a request's messages (tests/kits/llm_server.py ``_sha``)."""
    return hashlib.sha256(json.dumps(messages, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def cached_hashes(path: Path) -> set[str]:
    if not path.exists():
        return set()
    db = sqlite3.connect(path)
    try:
        return {messages_sha(json.loads(r)["messages"]) for (r,) in db.execute("SELECT request FROM responses")}
    except sqlite3.OperationalError:  # the table is not created yet
        return set()
    finally:
        db.close()


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_during_augmentation_then_resume_sends_nothing_twice(tmp_path, build):
    server = LLMServer(latency=0.4).start()
    try:
        cache = tmp_path / "cache.sqlite"
        recipe = {
            "name": "resume",
            "llms": {"local": {"model": "fake-med", "base_url": server.url, "cache": str(cache), "max_concurrency": 2}},
            "inputs": [{"builder": "table", "path": str(PASSAGES), "columns": {"id": "id", "text": "text"}}],
            "steps": [{"passage_qa": {"llm": "local", "per_passage": 2}}],
            "output": {"card": False},
        }
        path = tmp_path / "recipe.yaml"
        path.write_text(yaml.safe_dump(recipe))
        out = tmp_path / "out"
        meddata = str(Path(sys.executable).parent / "meddata")
        proc = subprocess.Popen([meddata, "build", str(path), "--out", str(out)], cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 240
        while len(cached_hashes(cache)) < 4:
            assert proc.poll() is None, f"the build ended before it could be killed: {proc.stderr.read()[-2000:]}"
            assert time.monotonic() < deadline, "no answers were cached in time"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        proc.stderr.close()
        assert proc.returncode == -signal.SIGKILL
        done_before = cached_hashes(cache)
        first_run = server.chat_log()
        assert 4 <= len(done_before) < 16, "the kill came too late to test anything"
        # every answer the killed run received before dying is in the cache (committed at once),
        # except at most the ones in flight at the moment of the kill
        assert len(first_run) - len(done_before) <= 2
        server.reset_log()

        result = build(recipe, out=out)  # the same recipe, run again

        second_run = server.chat_log()
        resent = [e for e in second_run if e["messages_sha"] in done_before]
        assert resent == [], f"{len(resent)} cached requests were sent again"
        assert len(second_run) == 16 - len(done_before)
        assert len({e["messages_sha"] for e in second_run}) == len(second_run)
        assert done_before | {e["messages_sha"] for e in second_run} == cached_hashes(cache)
        assert len(cached_hashes(cache)) == 16
        step = result.steps[-1]
        assert step.rows_in == 16 and step.quarantined == 0
        assert step.counters["llm.cached"] == len(done_before)
        assert step.counters["llm.requests"] == 16
        rows = [r for f in (out / "jsonl").glob("*.jsonl") for r in read_jsonl(f)]
        assert len(rows) == step.rows_out > 16
    finally:
        server.stop()
