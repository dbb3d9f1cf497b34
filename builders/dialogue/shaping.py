"""Turns -> TRL messages and rows: merging, the chat shape, and the row or drop of one dialogue."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from meddata.records import make_id, messages, new_meta, new_row
from meddata.steps import Drop


def merge_turns(turns: list[tuple[str, str]], separator: str = "\n") -> list[dict[str, str]]:
    """Drop ``drop``-role and empty turns, merge consecutive turns with the same role."""
    out: list[dict[str, str]] = []
    for role, content in turns:
        content = "\n".join(line.strip() for line in content.strip().split("\n")).strip()
        if role == "drop" or not content:
            continue
        if out and out[-1]["role"] == role:
            out[-1]["content"] += separator + content
        else:
            out.extend(messages((role, content)))
    return out


def dialogue_row(builder: str, msgs: list[dict[str, str]], *, source: str, file: str, locator: str,
                 phi_status: str, licence: str | None, sections: list[dict[str, str]] | None = None,
                 row_id: str | None = None, patient_id: Any = None, encounter_id: Any = None,
                 annotations: Mapping[str, Any] | None = None) -> dict | Drop:
    roles = {m["role"] for m in msgs}
    meta = new_meta(builder=builder, file=file, locator=locator, licence=licence, phi_status=phi_status,
                    patient_id=patient_id or None, encounter_id=encounter_id or None,
                    annotations={"turns": len(msgs), **(annotations or {})})
    reason = ("empty_dialogue" if not msgs else "no_assistant_turn" if "assistant" not in roles
              else "no_user_turn" if "user" not in roles else None)
    if reason:
        return Drop({"id": row_id or make_id(source, f"{Path(file).name}:{locator}"), "source": source,
                     "meta": meta}, reason)
    return new_row(source=source, meta=meta, id=row_id, messages=msgs, sections=sections or None)


DialogueShape = Literal["chat", "drop_opening", "as_is"]
#: The system preamble that keeps an assistant's opening words under ``dialogue_shape: chat``.
OPENING_PREAMBLE = "You opened this conversation by saying:\n{text}"


def shape_dialogue(msgs: list[dict[str, str]], shape: DialogueShape) -> tuple[list[dict[str, str]], list[str]]:
    """``msgs`` in a shape chat templates and SFT can use, and what was changed.

    ``chat`` / ``drop_opening``: an assistant turn before the first user turn becomes a system
    preamble (``chat``; some chat templates reject an assistant-first conversation, but the
    doctor's opening question is the context of the patient's first answer) or is dropped;
    user turns after the last assistant turn are trimmed (a final user turn gives SFT nothing
    to learn). ``as_is`` changes nothing (for dialogue -> note tasks, which want every word).
    """
    if shape == "as_is":
        return msgs, []
    out = [dict(m) for m in msgs]
    changes: list[str] = []
    first = 1 if out and out[0]["role"] == "system" else 0
    if len(out) > first and out[first]["role"] == "assistant":
        opening = out.pop(first)
        if shape == "chat":
            text = OPENING_PREAMBLE.format(text=opening["content"])
            if first:
                out[0]["content"] += "\n\n" + text
            else:
                out.insert(0, {"role": "system", "content": text})
            changes.append("opening_to_system")
        else:
            changes.append("opening_dropped")
    trimmed = 0
    while out and out[-1]["role"] == "user" and any(m["role"] == "assistant" for m in out):
        out.pop()
        trimmed += 1
    if trimmed:
        changes.append("trailing_user_trimmed")
    return out, changes

