"""The Record contract: one canonical schema for every row that flows through a pipeline.

Every builder emits rows with the same columns, so inputs from different sources concatenate
without schema juggling, and the output stage drops the columns a build never filled.
Content columns follow TRL's dataset types (``text``; ``messages``; ``prompt``+``completion``;
``prompt``+``chosen``+``rejected``), conversational form: lists of ``{role, content}``.
Exam items keep ``question``/``options``/``answer`` until a task maker formats them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from datasets import Features, Value

PHI_STATUSES = ("raw", "deidentified", "not_applicable")
ROLES = ("system", "user", "assistant")

MESSAGE = {"role": Value("string"), "content": Value("string")}
MESSAGE_LIST = [MESSAGE]
META_FEATURES = {
    "builder": Value("string"),
    "file": Value("string"),
    "locator": Value("string"),  # where in the file: "line 12", "row 40", "Bundle/entry[3]"
    "licence": Value("string"),
    "patient_id": Value("string"),
    "encounter_id": Value("string"),
    "phi_status": Value("string"),
    "steps": [Value("string")],
    "generator_model": Value("string"),
    "prompt_id": Value("string"),
    # Free-form per-step annotations (quality stats, PHI counts, judge scores) as a JSON
    # object string: Arrow structs need a fixed schema, annotations do not have one.
    "annotations": Value("string"),
}
CONTENT_FEATURES = {
    "text": Value("string"),
    "messages": MESSAGE_LIST,
    "prompt": MESSAGE_LIST,
    "completion": MESSAGE_LIST,
    "chosen": MESSAGE_LIST,
    "rejected": MESSAGE_LIST,
    "question": Value("string"),
    "options": [{"label": Value("string"), "text": Value("string")}],
    "answer": Value("string"),
    "sections": [{"title": Value("string"), "text": Value("string")}],
}
BASE_FEATURES = Features(
    {"id": Value("string"), "source": Value("string"), **CONTENT_FEATURES, "meta": META_FEATURES}
)
CONTENT_COLUMNS = tuple(CONTENT_FEATURES)
MESSAGE_COLUMNS = ("messages", "prompt", "completion", "chosen", "rejected")
# Columns the engine adds while a step runs; never part of a saved dataset.
STATUS_COLUMN = "__status__"
REASON_COLUMN = "__reason__"
SPLIT_COLUMN = "__split__"
#: Split names in the order outputs list them; other names follow alphabetically.
SPLIT_ORDER = ("train", "validation", "test")
#: Prefixes of a builder's per-source counters (``rows_read.<source>``,
#: ``phi_in.<status>.<source>``): :mod:`meddata.builders.rows_out` writes them and
#: :mod:`meddata.publish.buildinfo` reads them.
ROWS_READ = "rows_read."
PHI_IN = "phi_in."
INTERNAL_COLUMNS = (STATUS_COLUMN, REASON_COLUMN)


class RecordError(ValueError):
    """A row does not satisfy the Record contract. The message names the row and field."""


def make_id(source: str, locator: str) -> str:
    """Stable id from source + locator, so re-reading the same file gives the same ids."""
    return hashlib.sha1(f"{source}\x1f{locator}".encode()).hexdigest()[:20]


def new_meta(
    *,
    builder: str,
    file: str | None = None,
    locator: str | None = None,
    licence: str | None = None,
    phi_status: str = "not_applicable",
    patient_id: str | None = None,
    encounter_id: str | None = None,
    generator_model: str | None = None,
    prompt_id: str | None = None,
    annotations: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    if phi_status not in PHI_STATUSES:
        raise RecordError(f"meta.phi_status must be one of {PHI_STATUSES}, got {phi_status!r}")
    return {
        "builder": builder,
        "file": file,
        "locator": locator,
        "licence": licence,
        "patient_id": None if patient_id is None else str(patient_id),
        "encounter_id": None if encounter_id is None else str(encounter_id),
        "phi_status": phi_status,
        "steps": [],
        "generator_model": generator_model,
        "prompt_id": prompt_id,
        "annotations": json.dumps(dict(annotations or {}), sort_keys=True),
    }


def new_row(*, source: str, meta: Mapping[str, Any], id: str | None = None, **content: Any) -> dict:
    """A complete canonical row. Unknown content keys are an error, not silently dropped."""
    unknown = set(content) - set(CONTENT_COLUMNS)
    if unknown:
        raise RecordError(f"unknown content field(s) {sorted(unknown)}; allowed: {CONTENT_COLUMNS}")
    fname = str(meta.get("file") or "").rsplit("/", 1)[-1]
    row: dict[str, Any] = {"id": id or make_id(source, f"{fname}:{meta.get('locator')}")}
    row["source"] = source
    for col in CONTENT_COLUMNS:
        row[col] = content.get(col)
    full_meta = new_meta(builder=meta.get("builder") or "unknown")
    full_meta.update(meta)
    row["meta"] = full_meta
    return row


def messages(*turns: tuple[str, str]) -> list[dict[str, str]]:
    """``messages(("user", q), ("assistant", a))`` -> TRL conversational list."""
    return [{"role": role, "content": content} for role, content in turns]


def annotations(row: Mapping[str, Any]) -> dict[str, Any]:
    raw = (row.get("meta") or {}).get("annotations")
    return json.loads(raw) if raw else {}


def annotate(row: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """Record a step's statistic in ``meta.annotations[key]`` (never PHI values)."""
    ann = annotations(row)
    ann[key] = value
    row["meta"]["annotations"] = json.dumps(ann, sort_keys=True, default=str)
    return row


def mark_step(row: dict[str, Any], step_name: str) -> dict[str, Any]:
    steps = list(row["meta"].get("steps") or [])
    steps.append(step_name)
    row["meta"]["steps"] = steps
    return row


def detect_type(row: Mapping[str, Any]) -> str | None:
    """TRL dataset type of a row: preference, prompt_completion, conversational,
    language_modeling, exam, or None when it has no content yet."""
    if row.get("chosen") is not None and row.get("rejected") is not None:
        return "preference"
    if row.get("prompt") is not None and row.get("completion") is not None:
        return "prompt_completion"
    if row.get("messages"):
        return "conversational"
    if row.get("text") is not None:
        return "language_modeling"
    if row.get("question") is not None:
        return "exam"
    return None


#: The columns :func:`text_of` joins by default: everything a reader of the example sees.
TEXT_FIELDS = ("text", *MESSAGE_COLUMNS, "question", "options", "answer")


def column_strings(col: str, value: Any, role: str | None = None) -> list[str]:
    """The human-readable strings of one content column's value: the string itself, the option
    texts, section titles with their text, or message contents (only ``role``'s when given)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if col == "options":
        return [o.get("text") or "" for o in value]
    if col == "sections":
        return [f"{s.get('title') or ''}\n{s.get('text') or ''}".strip() for s in value]
    return [m.get("content") or "" for m in value if not role or m.get("role") == role]


def text_of(row: Mapping[str, Any], fields: Iterable[str] | None = None) -> str:
    """All human-readable content of a row joined by blank lines (what filters measure)."""
    return "\n\n".join(p for col in fields or TEXT_FIELDS for p in column_strings(col, row.get(col)) if p)


def map_text(row: dict[str, Any], fn, fields: Iterable[str] | None = None) -> dict[str, Any]:
    """Apply ``fn(str) -> str`` to every content string of a row, in place."""
    for col in fields or ("text", *MESSAGE_COLUMNS, "question", "answer", "options", "sections"):
        value = row.get(col)
        if value is None:
            continue
        if isinstance(value, str):
            row[col] = fn(value)
        elif col in ("options", "sections"):
            row[col] = [{**o, "text": fn(o["text"]) if o["text"] else o["text"]} for o in value]
        else:
            row[col] = [{**m, "content": fn(m["content"]) if m["content"] else m["content"]} for m in value]
    return row


def _check_messages(value: Any, field: str, where: str, allow_system: bool = True) -> None:
    if not isinstance(value, list) or not value:
        raise RecordError(f"{where}: field '{field}' must be a non-empty list of {{role, content}}")
    for i, msg in enumerate(value):
        if not isinstance(msg, Mapping) or set(msg) != {"role", "content"}:
            raise RecordError(f"{where}: field '{field}[{i}]' must have exactly the keys role, content")
        if msg["role"] not in ROLES:
            raise RecordError(
                f"{where}: field '{field}[{i}].role' must be one of {ROLES}, got {msg['role']!r}"
            )
        if not isinstance(msg["content"], str) or not msg["content"].strip():
            raise RecordError(f"{where}: field '{field}[{i}].content' must be a non-empty string")


def validate_row(row: Mapping[str, Any], where: str = "row") -> str:
    """Check a row against the Record contract and its TRL type; return the type.

    Raises RecordError naming ``where`` (e.g. ``"train.jsonl line 12"``) and the field.
    Messages never quote content, so PHI cannot leak through them.
    """
    for col in ("id", "source", "meta"):
        if not row.get(col):
            raise RecordError(f"{where}: required field '{col}' is missing or empty")
    status = row["meta"].get("phi_status")
    if status not in PHI_STATUSES:
        raise RecordError(f"{where}: field 'meta.phi_status' must be one of {PHI_STATUSES}, got {status!r}")
    kind = detect_type(row)
    if kind is None:
        raise RecordError(
            f"{where}: no content; expected one of text, messages, prompt+completion, "
            "prompt+chosen+rejected, question"
        )
    if kind == "language_modeling" and not (isinstance(row["text"], str) and row["text"].strip()):
        raise RecordError(f"{where}: field 'text' must be a non-empty string")
    if kind == "conversational":
        _check_messages(row["messages"], "messages", where)
        if not any(m["role"] == "assistant" for m in row["messages"]):
            raise RecordError(f"{where}: field 'messages' has no assistant turn to learn from")
    if kind in ("prompt_completion", "preference"):
        _check_messages(row["prompt"], "prompt", where)
        for col in ("completion",) if kind == "prompt_completion" else ("chosen", "rejected"):
            _check_messages(row[col], col, where)
            if any(m["role"] != "assistant" for m in row[col]):
                raise RecordError(f"{where}: field '{col}' must contain only assistant turns")
    if kind == "exam":
        labels = [o["label"] for o in row.get("options") or []]
        if labels and row.get("answer") not in labels:
            raise RecordError(f"{where}: field 'answer' must be one of the option labels {labels}")
    return kind
