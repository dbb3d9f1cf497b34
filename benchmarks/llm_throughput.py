"""LLM client throughput against a local OpenAI-protocol server with a fixed latency.

For each concurrency (default 1, 8, 64) it sends the same number of distinct requests
through (a) meddata's ``LLMClient`` (cache on, fresh file; guard; accounting; retries) and
(b) the plain ``openai.AsyncOpenAI`` client behind an ``asyncio.Semaphore``, in the same run
against the same server process, alternating which goes first. It prints requests/s, the
ratio to the ideal (concurrency / latency), meddata / plain, and the CPU seconds per
request spent by this process and by the server process, which is what explains the gap
to the ideal at high concurrency on a small machine.

    .venv/bin/python benchmarks/llm_throughput.py                 # 200 ms, concurrency 1 8 64
    .venv/bin/python benchmarks/llm_throughput.py --profile 64    # + cProfile of both clients at 64

The server is tests/kits/llm_server.py, started as its own process so its work does not share
this process's GIL. Needs no data files.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from meddata.llm import ChatRequest, LLMClient  # noqa: E402
from meddata.llm.config import parse_config  # noqa: E402

MODEL = "bench-model"


class Server:
    """tests/kits/llm_server.py in a child process."""

    def __init__(self, latency: float):
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "kits" / "llm_server.py"), "--latency", str(latency)],
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()
        if not line.startswith("READY "):
            raise RuntimeError(f"server did not start: {line!r}")
        self.url = line.split(" ", 1)[1]
        self.root = self.url.rsplit("/v1", 1)[0]
        self.control({"keep_log": False})

    def control(self, cmd: dict) -> None:
        req = urllib.request.Request(self.root + "/control", data=json.dumps(cmd).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=10).read()

    def stats(self) -> dict:
        return json.loads(urllib.request.urlopen(self.root + "/stats", timeout=10).read())

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process (Linux /proc)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def messages(tag: str, i: int) -> list[dict]:
    return [{"role": "user", "content": f"[{tag}] Request {i}: what is the first-line treatment of hypertension?"}]


def run_meddata(url: str, concurrency: int, n: int, tag: str, cache_dir: Path) -> float:
    cfg = parse_config("bench", {"model": MODEL, "base_url": url, "max_concurrency": concurrency,
                                 "timeout": 60, "max_retries": 0})
    client = LLMClient("bench", cfg, cache_path=cache_dir / f"{tag}.sqlite")
    client.generate([ChatRequest(messages=messages(tag + "-warm", i), max_tokens=64) for i in range(concurrency)])
    reqs = [ChatRequest(messages=messages(tag, i), max_tokens=64, key=str(i)) for i in range(n)]
    t0 = time.perf_counter()
    out = client.generate(reqs)
    elapsed = time.perf_counter() - t0
    client.close()
    failed = [r.error for r in out if r.error]
    if failed:
        raise RuntimeError(f"meddata: {len(failed)} requests failed, e.g. {failed[0]}")
    return n / elapsed


def run_plain(url: str, concurrency: int, n: int, tag: str) -> float:
    import openai

    async def main() -> float:
        client = openai.AsyncOpenAI(base_url=url, api_key="EMPTY", max_retries=0, timeout=60)
        sem = asyncio.Semaphore(concurrency)

        async def one(msgs: list[dict]) -> str:
            async with sem:
                resp = await client.chat.completions.create(model=MODEL, messages=msgs, max_tokens=64,
                                                            temperature=0.0)
                return resp.choices[0].message.content

        await asyncio.gather(*(one(messages(tag + "-warm", i)) for i in range(concurrency)))
        t0 = time.perf_counter()
        await asyncio.gather(*(one(messages(tag, i)) for i in range(n)))
        elapsed = time.perf_counter() - t0
        await client.close()
        return n / elapsed

    return asyncio.run(main())


def measure(server: Server, fn, *args) -> tuple[float, float, float]:
    """(requests/s, client CPU s per request, server CPU s per request)."""
    n = args[2]
    c0, s0 = time.process_time(), server.cpu_seconds()
    rate = fn(*args)
    c1, s1 = time.process_time(), server.cpu_seconds()
    return rate, (c1 - c0) / n, (s1 - s0) / n


def profile(server: Server, concurrency: int, n: int, cache_dir: Path, top: int = 18) -> None:
    for label, fn, args in (("plain AsyncOpenAI", run_plain, (server.url, concurrency, n, "prof-plain")),
                            ("meddata LLMClient", run_meddata, (server.url, concurrency, n, "prof-med", cache_dir))):
        prof = cProfile.Profile()
        prof.enable()
        fn(*args)
        prof.disable()
        buf = io.StringIO()
        # meddata's requests run on its loop thread, which cProfile (main thread only) does not see;
        # the plain client runs on the main thread. Both profiles show the same SDK hot spots.
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(top)
        print(f"\n--- cProfile, {label}, concurrency {concurrency}, {n} requests (by own time) ---")
        print("\n".join(buf.getvalue().splitlines()[:top + 12]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--latency", type=float, default=0.2, help="server latency in seconds (default 0.2)")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 64])
    ap.add_argument("--seconds", type=float, default=3.0, help="ideal duration of one measurement")
    ap.add_argument("--repeats", type=int, default=2, help="measurements per client and concurrency (median)")
    ap.add_argument("--profile", type=int, metavar="CONCURRENCY", help="also cProfile both clients at this concurrency")
    args = ap.parse_args(argv)

    import openai  # noqa: F401  (imported before timing: its import is seconds of CPU)

    server = Server(args.latency)
    cache_dir = Path(tempfile.mkdtemp(prefix="meddata-llm-bench-"))
    print(f"server {server.url} latency {args.latency * 1000:.0f} ms; os.cpu_count()={os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    header = (f"{'conc':>4} {'n':>5} {'ideal/s':>8} | {'plain/s':>8} {'x ideal':>7} | {'meddata/s':>9} {'x ideal':>7} | "
              f"{'meddata/plain':>13} | {'client ms/req':>13} {'server ms/req':>13}")
    print(header)
    print("-" * len(header))
    rows = []
    try:
        for c in args.concurrency:
            ideal = c / args.latency
            n = max(c, int(ideal * args.seconds))
            plain, med, cpu_p, cpu_m, srv = [], [], [], [], []
            for rep in range(args.repeats):
                order = ("plain", "meddata") if rep % 2 == 0 else ("meddata", "plain")
                for which in order:
                    tag = f"c{c}-r{rep}-{which}"
                    if which == "plain":
                        rate, cpu, scpu = measure(server, run_plain, server.url, c, n, tag)
                        plain.append(rate)
                        cpu_p.append(cpu)
                    else:
                        rate, cpu, scpu = measure(server, run_meddata, server.url, c, n, tag, cache_dir)
                        med.append(rate)
                        cpu_m.append(cpu)
                    srv.append(scpu)
            p, m = statistics.median(plain), statistics.median(med)
            rows.append((c, p / ideal, m / ideal, m / p, ideal * statistics.median(cpu_p),
                         ideal * statistics.median(cpu_m), ideal * statistics.median(srv)))
            print(f"{c:>4} {n:>5} {ideal:>8.1f} | {p:>8.1f} {p / ideal:>7.2f} | {m:>9.1f} {m / ideal:>7.2f} | "
                  f"{m / p:>13.3f} | {statistics.median(cpu_p) * 1000:>6.2f} plain {statistics.median(cpu_m) * 1000:>5.2f} med"
                  f" {statistics.median(srv) * 1000:>8.2f}")
        print("\nCPU needed to reach the ideal (CPU seconds per second = ideal req/s x CPU s per request):")
        for c, _, _, _, need_p, need_m, need_s in rows:
            print(f"  concurrency {c:>3}: plain client {need_p:.2f} cores, meddata client {need_m:.2f} cores, "
                  f"server {need_s:.2f} cores (this machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f})")
        stats = server.stats()
        print(f"\nserver: {stats['requests']} requests over {stats['connections']} TCP connections "
              f"(keep-alive), at most {stats['max_inflight']} in flight")
        worst = min(r[3] for r in rows)
        print(f"goal meddata >= 0.95 x plain at every concurrency: {'met' if worst >= 0.95 else 'NOT met'} "
              f"(worst {worst:.3f})")
        if args.profile:
            ideal = args.profile / args.latency
            profile(server, args.profile, max(args.profile, int(ideal * args.seconds)), cache_dir)
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
