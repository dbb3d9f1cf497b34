"""TRL dataset types and conversions to the formats other training tools read.

Canonical rows are conversational (lists of ``{role, content}``). These functions turn them
into TRL's standard (plain string) types, Alpaca and ShareGPT, one JSON object per line.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from meddata.records import detect_type
from meddata.registry import Registry

if TYPE_CHECKING:  # `datasets` costs a second to import; validating a recipe reads EXPORTERS
    from datasets import Dataset

SHAREGPT_ROLES = {"system": "system", "user": "human", "assistant": "gpt"}


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if v is not None}


def write_jsonl(rows: Iterable[dict], path: Path) -> int:
    n = 0
    with Path(path).open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(_clean(row), ensure_ascii=False, default=str) + "\n")
            n += 1
    return n


def _join(msgs: list[dict]) -> str:
    return "\n\n".join(m["content"] for m in msgs)


def to_trl_standard(row: dict[str, Any]) -> dict[str, Any] | None:
    """Conversational -> TRL standard: ``text``, ``prompt``/``completion`` or
    ``prompt``/``chosen``/``rejected`` as plain strings."""
    kind = detect_type(row)
    if kind == "language_modeling":
        return {"text": row["text"]}
    if kind == "prompt_completion":
        return {"prompt": _join(row["prompt"]), "completion": _join(row["completion"])}
    if kind == "preference":
        return {"prompt": _join(row["prompt"]), "chosen": _join(row["chosen"]), "rejected": _join(row["rejected"])}
    if kind == "conversational":
        msgs = row["messages"]
        last = max(i for i, m in enumerate(msgs) if m["role"] == "assistant")
        return {"prompt": _join(msgs[:last]), "completion": msgs[last]["content"]}
    return None


def _conversation(row: dict[str, Any]) -> list[dict] | None:
    kind = detect_type(row)
    if kind == "conversational":
        return row["messages"]
    if kind == "prompt_completion":
        return [*row["prompt"], *row["completion"]]
    if kind == "preference":
        return [*row["prompt"], *row["chosen"]]
    return None


def to_alpaca(row: dict[str, Any]) -> dict[str, Any] | None:
    """Alpaca ``{instruction, input, output, system}`` from the last assistant turn.
    Earlier turns go to ``history`` as LLaMA-Factory expects."""
    conv = _conversation(row)
    if not conv:
        return None
    system = "\n\n".join(m["content"] for m in conv if m["role"] == "system")
    turns = [m for m in conv if m["role"] != "system"]
    pairs = []
    for i in range(0, len(turns) - 1, 2):
        if turns[i]["role"] == "user" and turns[i + 1]["role"] == "assistant":
            pairs.append([turns[i]["content"], turns[i + 1]["content"]])
    if not pairs:
        return None
    instruction, output = pairs[-1]
    out = {"instruction": instruction, "input": "", "output": output, "history": pairs[:-1]}
    if system:
        out["system"] = system
    return out


def to_sharegpt(row: dict[str, Any]) -> dict[str, Any] | None:
    conv = _conversation(row)
    if not conv:
        return None
    return {"conversations": [{"from": SHAREGPT_ROLES[m["role"]], "value": m["content"]} for m in conv]}


def _exporter(convert: Callable[[dict], dict | None]) -> Callable[[Dataset, Path], int]:
    def export(ds: Dataset, path: Path) -> int:
        return write_jsonl(_converted(ds, convert), path)

    return export


def _converted(ds: Dataset, convert: Callable[[dict], dict | None]) -> Iterator[dict]:
    for row in ds:
        out = convert(row)
        if out is not None:
            yield {"id": row["id"], **out}


#: Exports by name (``output.exports`` in a recipe): ``export(dataset, path) -> rows written``.
#: Third-party ones through the ``meddata.exporters`` entry-point group.
EXPORTERS: Registry[Callable[[Dataset, Path], int]] = Registry("export", "meddata.exporters")
EXPORTERS.register("trl_standard", _exporter(to_trl_standard))
EXPORTERS.register("alpaca", _exporter(to_alpaca))
EXPORTERS.register("sharegpt", _exporter(to_sharegpt))
