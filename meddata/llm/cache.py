"""Persistent request cache: sqlite in WAL mode, one row per answered request.

Every answer is committed the moment it arrives, so a crashed or killed run loses nothing it
already paid for, and a re-run sends only what is missing. WAL lets several worker processes
share one file. The cache only ever holds prompts built from de-identified or non-PHI rows
(the client does not store raw-PHI requests unless the recipe says ``cache_raw: true``).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from meddata.llm.types import ChatRequest

SCHEMA_VERSION = 1


def request_key(backend: str, model: str, request: ChatRequest, extra: dict[str, Any] | None = None) -> str:
    """sha256 of backend + model + messages + generation parameters (not ``key``/``phi_status``)."""
    payload = {
        "v": SCHEMA_VERSION,
        "backend": backend,
        "model": model,
        "messages": request.messages,
        "temperature": request.temperature,
        "max_tokens": request.max_tokens,
        "seed": request.seed,
        "json_schema": request.json_schema,
        "json_mode": request.json_mode,
        **(extra or {}),
    }
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class ResponseCache:
    """A sqlite file of ``key -> response``. Use from one thread (the client's event loop)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), timeout=60, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a commit survives the process being killed (the OS has the
        # write); only a power loss can undo the last commits.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS responses ("
            " key TEXT PRIMARY KEY, model TEXT, request TEXT, response TEXT NOT NULL, created REAL)"
        )

    def get_many(self, keys: Iterable[str]) -> dict[str, dict]:
        keys = list(dict.fromkeys(keys))
        found: dict[str, dict] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for key, blob in self._db.execute(f"SELECT key, response FROM responses WHERE key IN ({marks})", chunk):
                found[key] = json.loads(blob)
        return found

    def put(self, key: str, model: str, request: ChatRequest, response: dict) -> None:
        """Store and commit one answer (autocommit: durable when this returns)."""
        req = {"messages": request.messages, "temperature": request.temperature, "max_tokens": request.max_tokens,
               "seed": request.seed, "json_schema": request.json_schema, "json_mode": request.json_mode}
        self._db.execute(
            "INSERT OR REPLACE INTO responses (key, model, request, response, created) VALUES (?, ?, ?, ?, ?)",
            (key, model, json.dumps(req, ensure_ascii=False), json.dumps(response, ensure_ascii=False), time.time()),
        )

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        self._db.close()
