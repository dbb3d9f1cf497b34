"""A variant of the test LLM server (``llm_server.LLMServer``) whose plain-text answers depend
on the request's ``seed``, like a model sampling at a temperature above zero.

The shared server answers as a deterministic function of the messages alone, so k samples
of one prompt (which differ only in ``seed``) all come back identical; the preference
ranking step needs them to differ. JSON answers, faults and everything else are the shared
server's. Seeded plain-text requests are logged like any other (with ``reply``).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from llm_server import FakeAnswers, LLMServer, _sha


class SamplingServer(LLMServer):
    async def _answer(self, raw: bytes, writer: asyncio.StreamWriter, close: bool, auth: str | None) -> bool:
        try:
            body = json.loads(raw)
            text = "\n".join(str(m.get("content") or "") for m in body["messages"])
            seeded_text = body.get("seed") is not None and not body.get("response_format") and not self._faulty(text)
        except (ValueError, KeyError, TypeError, AttributeError):
            seeded_text = False
        if not seeded_text:
            return await super()._answer(raw, writer, close, auth)
        messages = body["messages"]
        fake = FakeAnswers(body)
        seed = int(body["seed"])
        content = f"Answer {seed}: {fake.sentences[seed % len(fake.sentences)]}"
        entry: dict[str, Any] = {"t": time.time(), "method": "POST", "path": "/v1/chat/completions",
                                 "body_sha": _sha(raw), "messages_sha": _sha(messages), "fault": None, "status": 200,
                                 "body": body if self.keep_bodies else None, "authorization": auth,
                                 "reply": content, "picks": {}}
        with self._lock:
            self._log.append(entry)
        if self.latency:
            await asyncio.sleep(self.latency)
        n_prompt = sum(len(str(m.get("content") or "").split()) for m in messages)
        payload = {
            "id": "chatcmpl-" + entry["body_sha"][:12], "object": "chat.completion", "created": int(entry["t"]),
            "model": body.get("model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop",
                         "logprobs": None}],
            "usage": {"prompt_tokens": n_prompt, "completion_tokens": len(content.split()),
                      "total_tokens": n_prompt + len(content.split())},
        }
        await self._send(writer, 200, payload, close=close)
        return not close

    def _faulty(self, text: str) -> bool:
        """Whether an injected fault applies to this request (the shared server then answers)."""
        with self._lock:
            return any(f.match is None or f.match in text for f in self.faults)
