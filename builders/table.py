"""Generic JSONL / JSON / CSV / Parquet reader with a column map.

``columns`` maps target fields to source columns or to templates over them:

    columns: {user: question, assistant: answer}                 -> messages
    columns: {user: "{instruction}\\n\\n{input}", assistant: output}
    columns: {prompt: question, completion: answer}             -> prompt/completion
    columns: {text: transcription}                              -> text (pretraining)

Templates use ``{column}`` placeholders only (no attribute access, no code).
"""

from __future__ import annotations

import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from meddata.builders.rows_out import checked_rows
from pydantic import field_validator

from meddata import io
from meddata.params import InputPath, require_known
from meddata.records import PHI_STATUSES, messages, new_meta, new_row
from meddata.registry import register
from meddata.steps import Builder, Drop, Quarantine, StepContext, StepParams

TARGETS = (
    "id", "text", "system", "user", "assistant", "prompt", "completion", "chosen", "rejected",
    "question", "answer", "patient_id", "encounter_id",
)


class ColumnMap:
    """Compiled ``{target: column-or-template}``; raises KeyError naming a missing column."""

    def __init__(self, mapping: dict[str, str]):
        self.fields: dict[str, tuple[str, list[str]]] = {}
        for target, spec in mapping.items():
            names = [f for _, f, _, _ in string.Formatter().parse(spec) if f is not None]
            if names:
                for name in names:
                    if not name.isidentifier() and not name.replace(" ", "_").isidentifier():
                        raise ValueError(f"template for {target!r} may only use {{column}} placeholders")
                self.fields[target] = (spec, names)
            else:
                self.fields[target] = ("{" + spec + "}", [spec])

    def columns(self) -> set[str]:
        return {n for _, names in self.fields.values() for n in names}

    def apply(self, record: dict[str, Any]) -> dict[str, str]:
        out = {}
        for target, (template, names) in self.fields.items():
            values = {}
            for name in names:
                if name not in record:
                    raise KeyError(name)
                v = record[name]
                values[name] = "" if v is None else str(v)
            out[target] = template.format_map(values).strip()
        return out


class TableParams(StepParams):
    path: InputPath
    columns: dict[str, str]
    format: Literal["jsonl", "json", "csv", "tsv", "parquet"] | None = None
    source: str | None = None
    licence: str | None = None
    phi_status: str = "not_applicable"
    encoding: str = "utf-8"
    glob: str = "*"

    @field_validator("columns")
    @classmethod
    def _targets(cls, v: dict[str, str]) -> dict[str, str]:
        require_known(v, TARGETS, "target")
        has = set(v)
        if not ({"text"} <= has or {"user", "assistant"} <= has or {"prompt", "completion"} <= has
                or {"prompt", "chosen", "rejected"} <= has or {"question"} <= has):
            raise ValueError("map at least one content type: text; user+assistant; prompt+completion; "
                             "prompt+chosen+rejected; or question")
        ColumnMap(v)
        return v

    @field_validator("phi_status")
    @classmethod
    def _status(cls, v: str) -> str:
        if v not in PHI_STATUSES:
            raise ValueError(f"must be one of {PHI_STATUSES}")
        return v


@register
class TableBuilder(Builder):
    name = "table"
    description = "Read JSONL/JSON/CSV/Parquet rows and map columns to text, messages or prompt/completion."
    Params = TableParams
    output_columns = ("text", "messages", "prompt", "completion", "chosen", "rejected", "question", "answer")

    @checked_rows
    def read(self, ctx: StepContext) -> Iterator[dict | Drop | Quarantine]:
        p: TableParams = self.params
        cmap = ColumnMap(p.columns)
        root = Path(p.path)
        source = p.source or root.stem
        for path in io.files_under(root, (p.glob,)) if root.is_dir() else [root]:
            for item in io.iter_records(path, p.format, p.encoding):
                if isinstance(item, Quarantine):
                    yield item
                    continue
                locator, record = item
                yield self._row(cmap, record, source, ctx.display_path(path), locator)

    def _row(self, cmap: ColumnMap, record: dict, source: str, file: str, locator: str):
        p: TableParams = self.params
        try:
            f = cmap.apply(record)
        except KeyError as exc:
            return Quarantine(f"field {exc.args[0]!r} is missing (mapped in 'columns')", file, locator)
        meta = new_meta(builder=self.name, file=file, locator=locator, licence=p.licence,
                        phi_status=p.phi_status, patient_id=f.pop("patient_id", None) or None,
                        encounter_id=f.pop("encounter_id", None) or None)
        row_id = f.pop("id", None) or None
        content: dict[str, Any] = {}
        empty = [k for k in ("text", "user", "assistant", "prompt", "completion", "chosen", "rejected", "question")
                 if k in f and not f[k]]
        if empty:
            return Drop({"id": row_id, "source": source, "meta": meta}, f"empty_{empty[0]}")
        system = [("system", f["system"])] if f.get("system") else []
        if "user" in f:
            content["messages"] = messages(*system, ("user", f["user"]), ("assistant", f["assistant"]))
        elif "prompt" in f:
            content["prompt"] = messages(*system, ("user", f["prompt"]))
            for k in ("completion", "chosen", "rejected"):
                if k in f:
                    content[k] = messages(("assistant", f[k]))
        if "text" in f:
            content["text"] = f["text"]
        if "question" in f:
            content["question"] = f["question"]
            if "answer" in f:
                content["answer"] = f["answer"]
        return new_row(source=source, meta=meta, id=row_id and f"{source}:{row_id}", **content)
