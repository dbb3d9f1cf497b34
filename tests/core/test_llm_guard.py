"""The PHI guard: raw-PHI requests never leave the machine, and the refusal happens before any
socket is opened. Remote endpoints are named under the reserved ``.invalid`` domain only."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading

import pytest
import yaml
from llm_server import LLMServer
from testutil import DATA, ROOT, read_jsonl

from meddata.llm import ChatRequest, LLMClient, PHIGuardError, is_local_endpoint
from meddata.llm.config import parse_config
from meddata.llm.guard import PHIGuard, route_for

REMOTE = "http://llm.example.invalid/v1"
NOTES = DATA / "llm" / "synthea_notes_sample.jsonl"


@pytest.mark.parametrize("url,local", [
    ("http://127.0.0.1:8000/v1", True), ("http://127.8.9.10/v1", True), ("http://[::1]:8000/v1", True),
    ("http://[::ffff:127.0.0.1]/v1", True), ("http://localhost:11434/v1", True), ("http://LOCALHOST./v1", True),
    (REMOTE, False), ("https://api.openai.com/v1", False), ("http://10.0.0.5:8000/v1", False),
    ("http://localhost.example.invalid/v1", False), ("http://127.0.0.1.example.invalid/v1", False),
    ("http://[::2]/v1", False), ("not a url", False), ("", False),
])
def test_is_local_endpoint(url, local):
    assert is_local_endpoint(url) is local


@pytest.mark.parametrize("addresses,local", [
    (["127.0.0.1"], True), (["::1", "127.0.0.1"], True),
    (["10.1.2.3"], False), (["127.0.0.1", "93.184.216.34"], False), ([], False), (OSError("no such name"), False),
])
def test_a_localhost_name_is_local_only_when_it_resolves_to_loopback(addresses, local):
    # RFC 6761 asks resolvers to keep *.localhost on the machine; not every resolver does.
    def resolve(host):
        assert host == "vllm.localhost"
        if isinstance(addresses, Exception):
            raise addresses
        return addresses

    assert is_local_endpoint("http://vllm.localhost:8000/v1", resolve=resolve) is local


def test_other_names_are_remote_without_a_lookup():
    def resolve(host):
        raise AssertionError(f"looked up {host}")

    assert is_local_endpoint("http://gpu-box.internal/v1", resolve=resolve) is False


def test_a_request_that_does_not_say_its_phi_status_counts_as_raw(tmp_path):
    assert ChatRequest(messages=[]).phi_status == "raw"
    client = _remote_client(tmp_path)
    with pytest.raises(PHIGuardError, match="phi_status='raw'"):
        client.generate([ChatRequest(messages=[{"role": "user", "content": "Jane Roe"}])])
    client.close()


class RecordingProxy:
    """A real TCP listener standing in for an HTTP proxy: it records every connection and the
    first bytes received, and answers 502 (a proxy that cannot reach upstream)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.received: list[bytes] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    self.received.append(conn.recv(65536))
                    conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                except OSError:
                    self.received.append(b"")

    def close(self):
        self.sock.close()


@pytest.fixture
def proxy_env(monkeypatch):
    proxy = RecordingProxy()
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(var, proxy.url)
    yield proxy
    proxy.close()


def test_requests_to_a_local_endpoint_never_go_through_an_environment_proxy(tmp_path, proxy_env):
    # The issue: the guard passed raw PHI because base_url was local, and httpx then sent every
    # request to HTTP_PROXY. A local endpoint is reached directly, whatever the environment says.
    server = LLMServer().start()
    try:
        cfg = parse_config("local", {"model": "m", "base_url": server.url, "max_retries": 1, "timeout": 5})
        client = LLMClient("local", cfg, cache_path=tmp_path / "cache.sqlite")
        out = client.generate([ChatRequest(messages=[{"role": "user", "content": f"Jane Roe, MRN 12345{i}"}],
                                           phi_status="raw") for i in range(5)])
        client.close()
    finally:
        server.stop()
    assert [r.error for r in out] == [None] * 5
    assert len(server.chat_log()) == 5
    assert proxy_env.received == []


def test_a_remote_endpoint_behind_a_proxy_is_refused_naming_both_hops(tmp_path, proxy_env):
    route = route_for(REMOTE)
    assert (route.local, route.proxy) == (False, proxy_env.url)
    client = _remote_client(tmp_path)
    with pytest.raises(PHIGuardError, match=r"llm\.example\.invalid \(through the proxy 127\.0\.0\.1\)"):
        client.generate([ChatRequest(messages=[{"role": "user", "content": "x"}], phi_status="raw")])
    client.close()
    assert proxy_env.received == []


def test_no_proxy_exempts_a_host_from_the_environment_proxy(monkeypatch, proxy_env):
    monkeypatch.setenv("NO_PROXY", "example.invalid")
    assert route_for(REMOTE).proxy is None


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
