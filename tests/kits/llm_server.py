"""A small OpenAI-protocol server for tests and benchmarks, with fault injection.

It speaks ``POST /v1/chat/completions`` and ``GET /v1/models`` over real HTTP/1.1 (keep-alive)
on 127.0.0.1, built on asyncio streams so hundreds of slow requests cost no threads.

Answers are deterministic functions of the prompt, so generators get plausible output:
with ``response_format`` ``json_schema`` the answer is a JSON value built from the schema
(strings taken from the longest block of the first user message, enums picked by a hash of the
prompt); with ``json_object`` a small JSON object; otherwise a sentence of plain text.

Faults are rules, applied in order to the chat requests that match (``match``: a substring
of the messages' text; ``count``: how many requests, None = all):

=============  ===================================================================
``400``        HTTP 400 whose error message echoes the start of the prompt (as real
               servers' validation errors can)
``429``        HTTP 429 with ``Retry-After: <retry_after>`` seconds
``500``        HTTP 500
``slow``       sleep ``delay`` seconds, then answer (a client timeout fires first)
``invalid_body``  HTTP 200 whose body is not JSON
``truncated``  HTTP 200 that promises more bytes than it sends, then closes
``bad_content``   a valid completion whose message content is not valid JSON
``disconnect`` close the connection without any response
=============  ===================================================================

Use in-process (``LLMServer(latency=0.05).start()``; ``.url``, ``.log``, ``.add_fault``) or
as a process: ``python tests/kits/llm_server.py --port 0 --latency 0.2`` prints ``READY <url>``;
``POST /control`` with ``{"latency": s, "faults": [...], "reset_log": true, "keep_log": false}``,
``GET /log`` and ``GET /stats`` (connections, max in flight) control it over HTTP.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import re
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

MODEL = "fake-med-llm"
FAULT_KINDS = ("400", "429", "500", "slow", "invalid_body", "truncated", "bad_content", "disconnect")
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 411: "Length Required", 429: "Too Many Requests",
            500: "Internal Server Error"}


@dataclass
class Fault:
    kind: str
    count: int | None = 1
    match: str | None = None
    retry_after: float = 1.0
    delay: float = 5.0


def _sha(data: Any) -> str:
    blob = data if isinstance(data, bytes) else json.dumps(data, sort_keys=True, ensure_ascii=False).encode()
    return hashlib.sha256(blob).hexdigest()


def _sentences(text: str) -> list[str]:
    text = re.sub(r"[#*_`>|]+", " ", text)
    parts = [p.strip() for p in re.split(r"(?<=[.!?])\s+|\n+", text)]
    good = [p for p in parts if len(p.split()) >= 4]
    return good or [p for p in parts if p] or ["No content was given."]


class FakeAnswers:
    """Deterministic answers derived from a request body."""

    def __init__(self, body: dict):
        self.messages = body.get("messages") or []
        user = [m.get("content") or "" for m in self.messages if m.get("role") == "user"]
        self.text = user[0] if user else ""  # the task; later user turns are follow-ups (repairs)
        # The material is the longest block of the task (a passage, a question), not the
        # instruction line around it.
        blocks = [b.strip().strip('"').strip() for b in re.split(r"\n\s*\n", self.text)]
        self.sentences = _sentences(max(blocks, key=len) if blocks else "")
        self.rng = random.Random(_sha(self.messages))
        self.picks: dict[str, Any] = {}
        self.fmt = body.get("response_format") or {}

    def content(self) -> str:
        kind = self.fmt.get("type")
        if kind == "json_schema":
            schema = (self.fmt.get("json_schema") or {}).get("schema") or {}
            return json.dumps(self.value(schema, "output", 0), ensure_ascii=False)
        if kind == "json_object":
            return json.dumps({"answer": self.sentences[0]}, ensure_ascii=False)
        return f"In short: {self.sentences[0]}"

    def value(self, schema: dict, name: str, index: int) -> Any:
        if "enum" in schema:
            pick = self.rng.choice(schema["enum"])
            self.picks[name] = pick
            return pick
        kind = schema.get("type", "string")
        if isinstance(kind, list):
            kind = kind[0]
        if kind == "object":
            props = schema.get("properties") or {}
            return {k: self.value(v, k, index) for k, v in props.items()}
        if kind == "array":
            lo, hi = schema.get("minItems", 1), schema.get("maxItems", 3)
            n = max(lo, min(hi, 3))
            return [self.value(schema.get("items") or {}, name, i) for i in range(n)]
        if kind in ("integer", "number"):
            return schema.get("minimum", 3)
        if kind == "boolean":
            return True
        return self.string(name, index, schema.get("minLength", 0))

    def string(self, name: str, index: int, min_len: int) -> str:
        sent = self.sentences[index % len(self.sentences)]
        if "question" in name or "instruction" in name:
            words = re.findall(r"[A-Za-z][A-Za-z-]+", sent)
            topic = " ".join(words[-4:]) if words else "this topic"
            out = f"What should a clinician know about {topic.lower()}?"
        elif name in ("rationale", "explanation", "reason", "reasons"):
            out = " ".join(self.sentences[:3])
        else:
            out = sent
        while len(out) < min_len:
            out += " " + sent
        return out


class LLMServer:
    """The server; runs on its own event loop in a daemon thread (``start``) or in ``main``."""

    def __init__(self, latency: float = 0.0, host: str = "127.0.0.1", port: int = 0):
        self.latency = latency
        self.host, self.port = host, port
        #: Keep request bodies in the log (off for long benchmarks).
        self.keep_bodies = True
        self.faults: list[Fault] = []
        #: Chat requests being answered now, and the most at once (to check concurrency limits).
        self.inflight = 0
        self.max_inflight = 0
        #: TCP connections accepted (keep-alive means far fewer than requests).
        self.connections = 0
        self._log: list[dict] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None

    # -- control (thread-safe) ----------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def log(self) -> list[dict]:
        """Chat requests received: t, method, path, body_sha, messages_sha, fault, status, reply."""
        with self._lock:
            return [dict(e) for e in self._log]

    def chat_log(self) -> list[dict]:
        return [e for e in self.log if e["path"].endswith("/chat/completions")]

    def reset_log(self) -> None:
        with self._lock:
            self._log.clear()
            self.max_inflight = self.inflight

    def add_fault(self, kind: str, count: int | None = 1, match: str | None = None, **kw: float) -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; one of {FAULT_KINDS}")
        with self._lock:
            self.faults.append(Fault(kind, count, match, **kw))

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    def _take_fault(self, text: str) -> Fault | None:
        with self._lock:
            for f in self.faults:
                if f.match is None or f.match in text:
                    if f.count is not None:
                        f.count -= 1
                        if f.count <= 0:
                            self.faults.remove(f)
                    return f
        return None

    # -- lifecycle ----------------------------------------------------------------------------------
    async def serve(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]

    def start(self) -> LLMServer:
        ready = threading.Event()
        errors: list[BaseException] = []

        def main() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self.serve())
            except BaseException as exc:  # surface bind errors to start()
                errors.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()

        self._thread = threading.Thread(target=main, name="llm-test-server", daemon=True)
        self._thread.start()
        ready.wait(10)
        if errors:
            raise errors[0]
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is None:
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(5)

    # -- HTTP ----------------------------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                try:
                    method, target, _ = line.decode("latin-1").split(" ", 2)
                except ValueError:
                    break
                headers: dict[str, str] = {}
                while True:
                    h = await reader.readline()
                    if h in (b"\r\n", b"\n", b""):
                        break
                    k, _, v = h.decode("latin-1").partition(":")
                    headers[k.strip().lower()] = v.strip()
                if "chunked" in headers.get("transfer-encoding", "").lower():
                    await self._send(writer, 411, {"error": {"message": "send Content-Length"}}, close=True)
                    break
                n = int(headers.get("content-length") or 0)
                body = await reader.readexactly(n) if n else b""
                close = headers.get("connection", "").lower() == "close"
                keep = await self._route(method, target.split("?")[0], body, writer, close, headers)
                if not keep:
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass  # stop(): end quietly (a cancelled stream handler makes asyncio log a traceback)
        finally:
            writer.close()

    async def _send(self, writer: asyncio.StreamWriter, status: int, payload: Any, *, close: bool = False,
                    extra: dict[str, str] | None = None, raw: bytes | None = None, claim: int | None = None) -> None:
        data = raw if raw is not None else json.dumps(payload, ensure_ascii=False).encode()
        head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}", "Content-Type: application/json",
                f"Content-Length: {claim if claim is not None else len(data)}"]
        head += [f"{k}: {v}" for k, v in (extra or {}).items()]
        if close:
            head.append("Connection: close")
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + data)
        await writer.drain()

    async def _route(self, method: str, path: str, body: bytes, writer: asyncio.StreamWriter, close: bool,
                     headers: dict[str, str]) -> bool:
        if method == "GET" and path.endswith("/models"):
            await self._send(writer, 200, {"object": "list", "data": [
                {"id": MODEL, "object": "model", "created": 0, "owned_by": "meddata-tests"}]}, close=close)
            return not close
        if method == "GET" and path == "/log":
            await self._send(writer, 200, self.log, close=close)
            return not close
        if method == "GET" and path == "/stats":
            stats = {"connections": self.connections, "max_inflight": self.max_inflight, "requests": len(self._log)}
            await self._send(writer, 200, stats, close=close)
            return not close
        if method == "POST" and path == "/control":
            cmd = json.loads(body or b"{}")
            if "latency" in cmd:
                self.latency = float(cmd["latency"])
            if cmd.get("reset_log"):
                self.reset_log()
            if "keep_log" in cmd:
                self.keep_bodies = bool(cmd["keep_log"])
            if cmd.get("clear_faults"):
                self.clear_faults()
            for f in cmd.get("faults") or []:
                self.add_fault(**f)
            await self._send(writer, 200, {"ok": True}, close=close)
            return not close
        if method == "POST" and path.endswith("/chat/completions"):
            return await self._chat(body, writer, close, headers.get("authorization"))
        await self._send(writer, 404, {"error": {"message": f"no route {method} {path}"}}, close=close)
        return not close

    async def _chat(self, raw: bytes, writer: asyncio.StreamWriter, close: bool, auth: str | None) -> bool:
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            return await self._answer(raw, writer, close, auth)
        finally:
            self.inflight -= 1

    async def _answer(self, raw: bytes, writer: asyncio.StreamWriter, close: bool, auth: str | None) -> bool:
        try:
            body = json.loads(raw)
            messages = body["messages"]
            text = "\n".join(str(m.get("content") or "") for m in messages)
        except (ValueError, KeyError, TypeError, AttributeError):
            await self._send(writer, 400, {"error": {"message": "body must be JSON with messages"}}, close=close)
            return not close
        fault = self._take_fault(text)
        entry: dict[str, Any] = {"t": time.time(), "method": "POST", "path": "/v1/chat/completions",
                                 "body_sha": _sha(raw), "messages_sha": _sha(messages),
                                 "fault": fault.kind if fault else None, "status": 200,
                                 "body": body if self.keep_bodies else None, "authorization": auth}
        with self._lock:
            self._log.append(entry)
        if self.latency:
            await asyncio.sleep(self.latency)
        kind = fault.kind if fault else None
        if kind == "disconnect":
            entry["status"] = None
            return False
        if kind == "400":
            entry["status"] = 400
            await self._send(writer, 400, {"error": {"message": f"invalid request near: {text[:40]}"}}, close=close)
            return not close
        if kind in ("429", "500"):
            status = int(kind)
            entry["status"] = status
            extra = {"Retry-After": f"{fault.retry_after:g}"} if status == 429 else None
            await self._send(writer, status, {"error": {"message": "injected fault", "type": "fault"}},
                             close=close, extra=extra)
            return not close
        if kind == "slow":
            await asyncio.sleep(fault.delay)
        if kind == "invalid_body":
            await self._send(writer, 200, None, raw=b'{"id": "chatcmpl-broken", "choices": [{"mess', close=close)
            return not close
        answers = FakeAnswers(body)
        content = "Sure! Here is the JSON you asked for: {pairs: [" if kind == "bad_content" else answers.content()
        entry["reply"] = content
        entry["picks"] = answers.picks
        n_prompt = len(text.split())
        payload = {
            "id": "chatcmpl-" + entry["body_sha"][:12], "object": "chat.completion", "created": int(entry["t"]),
            "model": body.get("model") or MODEL,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "finish_reason": "stop", "logprobs": None}],
            "usage": {"prompt_tokens": n_prompt, "completion_tokens": len(content.split()),
                      "total_tokens": n_prompt + len(content.split())},
        }
        if kind == "truncated":
            data = json.dumps(payload).encode()
            await self._send(writer, 200, None, raw=data[: len(data) // 2], claim=len(data))
            return False
        await self._send(writer, 200, payload, close=close)
        return not close


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--latency", type=float, default=0.0, help="seconds before each chat answer")
    args = ap.parse_args(argv)
    server = LLMServer(args.latency, args.host, args.port)

    async def run() -> None:
        await server.serve()
        print(f"READY {server.url}", flush=True)
        await asyncio.Event().wait()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
