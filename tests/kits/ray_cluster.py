"""A real two-node Ray cluster on 127.0.0.1 for tests: ``ray start --head`` plus a second
``ray start --address`` with its own CPU, this process connected as the driver. Only the
processes started here are stopped (never ``ray stop``, which would stop other clusters).

The same approach as ``tests/core/test_ray_cluster.py``'s fixture, as a context manager any
test module can wrap in its own module-scoped fixture."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: This test cluster is ours alone: no token shared through ~/.ray with other clusters on the machine.
PRIVATE_CLUSTER = {"RAY_AUTH_MODE": "disabled"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_start(args: list[str], log: Path) -> subprocess.Popen:
    ray = [sys.executable, "-m", "ray.scripts.scripts"]  # the `ray` command, from this interpreter
    return subprocess.Popen([*ray, "start", "--block", "--disable-usage-stats", "--node-ip-address=127.0.0.1", *args],
                            stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, **PRIVATE_CLUSTER})


def _stop(procs: list[subprocess.Popen]) -> None:
    """Stop the nodes we started, all at once: their sessions' processes only."""
    for proc in procs:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 5  # a node that has not exited by then is killed (its session only)
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever of the session is left
        except ProcessLookupError:
            pass


@contextmanager
def two_node_cluster(tmp: Path, cpus_per_node: int = 1) -> Iterator[str]:
    """Start the cluster, connect this process (``ray.init``), yield its address; then
    disconnect and stop both nodes."""
    import ray

    saved = {k: os.environ.get(k) for k in PRIVATE_CLUSTER}
    os.environ.update(PRIVATE_CLUSTER)
    port = free_port()
    address = f"127.0.0.1:{port}"
    head = _ray_start(["--head", f"--port={port}", f"--num-cpus={cpus_per_node}", "--include-dashboard=false",
                       f"--dashboard-agent-listen-port={free_port()}", f"--temp-dir={tmp / 'r'}"], tmp / "head.log")
    nodes = [head]
    try:
        deadline = time.monotonic() + 120
        while True:  # the head takes a while on a loaded machine
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert head.poll() is None, (tmp / "head.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the Ray head did not start"
            time.sleep(0.5)
        nodes.append(_ray_start([f"--address={address}", f"--num-cpus={cpus_per_node}",
                                 f"--dashboard-agent-listen-port={free_port()}"], tmp / "worker.log"))
        ray.init(address=address, include_dashboard=False, log_to_driver=True, configure_logging=False,
                 _node_ip_address="127.0.0.1")
        while len([n for n in ray.nodes() if n["Alive"]]) < 2:
            assert nodes[1].poll() is None, (tmp / "worker.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the second Ray node did not join"
            time.sleep(0.5)
        yield address
    finally:
        if ray.is_initialized():
            ray.shutdown()
        _stop(nodes)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
