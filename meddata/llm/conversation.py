"""Conversation helpers shared by the generators: read a row's turns whatever its TRL type,
ask for a patient-assistant dialogue as JSON, and turn the answer back into messages.

Dialogues are requested as a list of ``{patient, assistant}`` exchanges rather than a list
of ``{role, content}`` turns: the schema then guarantees strict alternation (a constrained
decoder cannot emit two patient turns in a row), and the result is always a valid TRL
conversation ending with an assistant turn.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from meddata.records import detect_type

# A referral to a person or service who can examine the patient (Clinical Camel's rule:
# the assistant knows its limits and sends the patient to a clinician).
_CLINICIAN = re.compile(
    r"\b(?:doctors?|physicians?|clinicians?|GP|general practitioner|nurses?|pharmacists?|specialists?|"
    r"(?:health ?care|medical) (?:provider|professional|team|attention|care|advice)s?|"
    r"emergency (?:department|room|services|care)|urgent care|911|999|112|"
    r"(?:cardiologist|dermatologist|neurologist|gynecologist|pediatrician|endocrinologist|"
    r"gastroenterologist|psychiatrist|surgeon|dentist|midwife)s?)\b",
    re.I,
)


def turns_of(row: Mapping[str, Any]) -> list[dict[str, str]] | None:
    """The row's conversation (``messages``, or ``prompt`` + ``completion``); None for rows of
    other types (text, exam items, preference pairs)."""
    kind = detect_type(row)
    if kind == "conversational":
        return [{"role": m["role"], "content": m["content"]} for m in row["messages"]]
    if kind == "prompt_completion":
        return [{"role": m["role"], "content": m["content"]} for m in (*row["prompt"], *row["completion"])]
    return None


def split_system(turns: list[dict[str, str]]) -> tuple[str | None, list[dict[str, str]]]:
    """(the system prompt or None, the other turns)."""
    system = next((t["content"] for t in turns if t["role"] == "system"), None)
    return system, [t for t in turns if t["role"] != "system"]


def single_turn(row: Mapping[str, Any]) -> tuple[str | None, str, str] | None:
    """(system, user, assistant) for a one-exchange instruction row, else None."""
    turns = turns_of(row)
    if turns is None:
        return None
    system, rest = split_system(turns)
    if [t["role"] for t in rest] != ["user", "assistant"]:
        return None
    user, assistant = (t["content"].strip() for t in rest)
    if not user or not assistant:
        return None
    return system, user, assistant


def final_answer(row: Mapping[str, Any]) -> tuple[list[dict[str, str]], str] | None:
    """(the turns before the last assistant turn, that turn's text) when the conversation
    ends with an assistant turn answering a user turn; else None."""
    turns = turns_of(row)
    if not turns or len(turns) < 2 or turns[-1]["role"] != "assistant" or turns[-2]["role"] != "user":
        return None
    answer = turns[-1]["content"].strip()
    return (turns[:-1], answer) if answer else None


def dialogue_schema(min_exchanges: int, max_exchanges: int, **extra: dict) -> dict:
    """JSON schema of ``{"dialogue": [{"patient": ..., "assistant": ...}, ...], **extra}``."""
    exchange = {
        "type": "object",
        "properties": {"patient": {"type": "string", "minLength": 2}, "assistant": {"type": "string", "minLength": 2}},
        "required": ["patient", "assistant"],
    }
    props = {**extra, "dialogue": {"type": "array", "items": exchange, "minItems": min_exchanges,
                                   "maxItems": max_exchanges}}
    return {"type": "object", "properties": props, "required": list(props)}


def dialogue_messages(exchanges: list[Mapping[str, str]], system: str | None = None) -> list[dict[str, str]] | None:
    """TRL messages from ``[{patient, assistant}]``; None when any turn is blank."""
    out = [{"role": "system", "content": system}] if system else []
    for ex in exchanges:
        patient, assistant = str(ex.get("patient") or "").strip(), str(ex.get("assistant") or "").strip()
        if not patient or not assistant:
            return None
        out += [{"role": "user", "content": patient}, {"role": "assistant", "content": assistant}]
    return out or None


def refers_to_clinician(text: str) -> bool:
    """True when ``text`` sends the patient to a clinician or an emergency service."""
    return bool(_CLINICIAN.search(text))


def dialogue_traits(messages: list[Mapping[str, str]]) -> dict[str, Any]:
    """What a dialogue does that Clinical Camel asks for, for ``meta.annotations``."""
    assistant = [m["content"] for m in messages if m["role"] == "assistant"]
    return {
        "exchanges": len(assistant),
        "followup_questions": sum("?" in a for a in assistant),
        "refers_to_clinician": any(refers_to_clinician(a) for a in assistant),
    }
