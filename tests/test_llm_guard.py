"""The PHI guard: raw-PHI requests never leave the machine, and the refusal happens before any
socket is opened. Remote endpoints are named under the reserved ``.invalid`` domain only."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest
import yaml
from testutil import DATA, ROOT, read_jsonl

from meddata.llm import ChatRequest, LLMClient, PHIGuardError, is_local_endpoint
from meddata.llm.config import parse_config
from meddata.llm.guard import PHIGuard

REMOTE = "http://llm.example.invalid/v1"
NOTES = DATA / "llm" / "synthea_notes_sample.jsonl"


@pytest.mark.parametrize("url,local", [
    ("http://127.0.0.1:8000/v1", True), ("http://127.8.9.10/v1", True), ("http://[::1]:8000/v1", True),
    ("http://[::ffff:127.0.0.1]/v1", True), ("http://localhost:11434/v1", True), ("http://LOCALHOST./v1", True),
    ("http://vllm.localhost/v1", True),
    (REMOTE, False), ("https://api.openai.com/v1", False), ("http://10.0.0.5:8000/v1", False),
    ("http://localhost.example.invalid/v1", False), ("http://127.0.0.1.example.invalid/v1", False),
    ("http://[::2]/v1", False), ("not a url", False), ("", False),
])
def test_is_local_endpoint(url, local):
    assert is_local_endpoint(url) is local


def _remote_client(tmp_path, **extra) -> LLMClient:
    cfg = parse_config("remote", {"model": "gpt-x", "base_url": REMOTE, **extra})
    return LLMClient("remote", cfg, cache_path=tmp_path / "cache.sqlite")


@pytest.mark.parametrize("status", ["raw", None, "unknown"])
def test_unsafe_rows_to_a_remote_endpoint_are_refused(tmp_path, status):
    client = _remote_client(tmp_path)
    reqs = [ChatRequest(messages=[{"role": "user", "content": "ok"}], phi_status="deidentified"),
            ChatRequest(messages=[{"role": "user", "content": "Jane Roe, MRN 123456"}], phi_status=status)]
    with pytest.raises(PHIGuardError) as info:
        client.generate(reqs)
    msg = str(info.value)
    assert "add the 'deid' step before this step" in msg and "llm.example.invalid" in msg
    assert "Jane" not in msg and "123456" not in msg
    assert client.stats["requests"] == 0
    assert not (tmp_path / "cache.sqlite").exists()  # nothing was even scheduled
    client.close()


def test_override_is_logged_loudly_once(caplog):
    guard = PHIGuard("remote", REMOTE, local=False, allow_phi_to_remote=True)
    raw = [ChatRequest(messages=[{"role": "user", "content": "x"}], phi_status="raw")]
    with caplog.at_level(logging.WARNING, logger="meddata.llm"):
        guard.check(raw)
        guard.check(raw)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "PHI GUARD OVERRIDDEN" in warnings[0].getMessage()
    assert "llm.example.invalid" in warnings[0].getMessage()


def test_safe_rows_pass_the_guard():
    guard = PHIGuard("remote", REMOTE, local=False, allow_phi_to_remote=False)
    guard.check([ChatRequest(messages=[], phi_status=s) for s in ("deidentified", "not_applicable")])


# A child process that runs `meddata build` with an audit hook recording every socket event.
_CHILD = r"""
import json, socket, sys
events = []
def hook(event, args):
    if event.startswith("socket."):
        events.append([event, repr(args)[:200]])
sys.addaudithook(hook)
from meddata.cli import main
try:
    rc = main(sys.argv[2:])
finally:
    during = list(events)
    socket.socket().close()  # control: the hook does see socket activity
    with open(sys.argv[1], "w") as fh:
        json.dump({"during": during, "control": events[len(during):]}, fh)
sys.exit(rc)
"""


def test_recipe_sending_raw_notes_to_a_remote_llm_fails_before_any_socket_opens(tmp_path):
    recipe = {
        "name": "raw-to-remote",
        "llms": {"remote": {"model": "gpt-x", "base_url": REMOTE, "cache": str(tmp_path / "cache.sqlite")}},
        "inputs": [{"builder": "table", "path": str(NOTES), "phi_status": "raw",
                    "columns": {"id": "doc_id", "text": "text", "patient_id": "patient_id"}}],
        "steps": [{"passage_qa": {"llm": "remote"}}],
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    events_file = tmp_path / "events.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(events_file), "build", str(path), "--out",
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert proc.returncode == 2, proc.stderr[-2000:]
    err = proc.stderr.strip().splitlines()[-1]
    assert err.startswith("meddata build: error: PHI guard:")
    assert "add the 'deid' step before this step" in err
    events = json.loads(events_file.read_text())
    assert any(e[0] == "socket.__new__" for e in events["control"]), "the audit hook saw nothing"
    assert events["during"] == [], f"socket activity during the build: {events['during'][:5]}"
    # no PHI in the message: no note text, no patient id
    for note in read_jsonl(NOTES):
        assert note["patient_id"] not in proc.stderr + proc.stdout
        for line in note["text"].splitlines():
            if len(line) > 20:
                assert line not in proc.stderr + proc.stdout
    assert not (tmp_path / "cache.sqlite").exists()


def test_guard_check_runs_before_the_backend_is_touched(tmp_path):
    # The refusal does not depend on the SDK: the openai client is never even constructed.
    client = _remote_client(tmp_path)
    with pytest.raises(PHIGuardError):
        client.generate([ChatRequest(messages=[{"role": "user", "content": "x"}], phi_status="raw")])
    assert client.backend._clients == []
    client.close()


def test_refusal_names_the_override_key(tmp_path):
    client = _remote_client(tmp_path)
    with pytest.raises(PHIGuardError, match="allow_phi_to_remote: true under llms.remote"):
        client.generate([ChatRequest(messages=[], phi_status="raw")])
    client.close()
