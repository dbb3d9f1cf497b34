"""Hugging Face datasets by name (or a local dataset folder) -> rows, through a column map.

``dataset`` is a Hub id (``org/name``), a folder written by ``save_to_disk`` (read with
``load_from_disk``) or a local data folder/file that ``datasets.load_dataset`` understands
(JSON, CSV, Parquet). ``columns`` is the same map as the ``table`` builder's
(``{user: question, assistant: answer}``; templates like ``"{instruction}\\n\\n{input}"``).
``streaming: true`` iterates without downloading or converting the whole split first.

Offline use needs nothing special for a local folder. For a Hub id the network is used
only when the user names one; an unreachable Hub is one clear :class:`HubUnavailableError`
(a ``FileNotFoundError``, so the CLI prints it as a one-line error) instead of a traceback
from inside ``datasets``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

from meddata.builders.rows_out import checked_rows
from meddata.builders.table import ColumnMap, TableBuilder, TableParams
from pydantic import field_validator

from meddata import io
from meddata.errors import UserError
from meddata.registry import register
from meddata.steps import Drop, Quarantine, StepContext, StepParams


class HubUnavailableError(UserError, FileNotFoundError):
    """The dataset could not be reached or found; the message says what to do."""


class HubDataError(ValueError):
    """The dataset was found but its files could not be read (becomes a quarantine entry)."""


class HubParams(StepParams):
    dataset: str  # Hub id, save_to_disk folder, or local data folder/file (relative to the recipe)
    config: str | None = None  # the dataset's configuration (subset) name
    split: str = "train"
    columns: dict[str, str]
    streaming: bool = False
    revision: str | None = None
    source: str | None = None  # default: the dataset's last path component
    licence: str | None = None
    phi_status: Literal["raw", "deidentified", "not_applicable"] = "not_applicable"

    @field_validator("columns")
    @classmethod
    def _targets(cls, v: dict[str, str]) -> dict[str, str]:
        return TableParams._targets(v)  # the same targets and checks as the table builder


@register
class HubBuilder(TableBuilder):
    """A table reader whose rows come from ``datasets`` instead of a file."""

    name = "hub"
    description = "Hugging Face dataset by name or local dataset folder (datasets.load_dataset) with a column map."
    Params = HubParams

    def input_paths(self, ctx: StepContext) -> list[Path]:
        local = self._local(ctx)
        return [local] if local else []

    def _local(self, ctx: StepContext) -> Path | None:
        path = ctx.resolve(self.params.dataset)
        return path if path.exists() else None

    @checked_rows
    def read(self, ctx: StepContext) -> Iterator[dict | Drop | Quarantine]:
        p: HubParams = self.params
        cmap = ColumnMap(p.columns)
        local = self._local(ctx)
        label = ctx.display_path(local) if local else f"hf://datasets/{p.dataset}"
        where = f"{label} [{p.config + '/' if p.config else ''}{p.split}]"
        source = p.source or (local.stem if local else p.dataset.rsplit("/", 1)[-1])
        try:
            rows = self._open(local, where)
        except HubDataError as exc:
            yield Quarantine(str(exc), where, "load")
            return
        i = 0
        iterator = iter(rows)
        while True:
            try:
                record = next(iterator)
            except StopIteration:
                return
            except Exception as exc:  # streaming: a bad file surfaces while iterating
                yield Quarantine(self._describe(exc, "could not read the data"), where, f"row {i}")
                return
            size = sum(len(str(record.get(c) or "")) for c in cmap.columns())
            if size > io.MAX_LINE_BYTES:  # the limit the file readers apply to one line
                yield Quarantine(f"record is {size:,} characters, over the {io.MAX_LINE_BYTES:,} limit",
                                 where, f"row {i}")
            else:
                # a wrong column map quarantines every row naming the missing field, as in ``table``
                yield self._row(cmap, dict(record), source, where, f"row {i}")
            i += 1

    def _describe(self, exc: BaseException, what: str) -> str:
        """A library error as one line. The library's own message is included only for data
        without raw PHI, since parsers (CSV, JSON) may quote the offending record."""
        cause = exc.__cause__ or exc.__context__
        kinds = type(exc).__name__ + (f" <- {type(cause).__name__}" if cause else "")
        if self.params.phi_status == "raw":
            return f"datasets {what} ({kinds})"
        detail = str(cause or exc).strip().splitlines()[0][:200] if str(cause or exc).strip() else ""
        return f"datasets {what} ({kinds}{': ' + detail if detail else ''})"

    def _open(self, local: Path | None, where: str) -> Iterable[dict[str, Any]]:
        import datasets
        from datasets.exceptions import DatasetGenerationError, DatasetNotFoundError

        p: HubParams = self.params
        try:
            if local is not None and ((local / "dataset_dict.json").exists() or (local / "state.json").exists()):
                loaded = datasets.load_from_disk(str(local))
                if isinstance(loaded, datasets.DatasetDict):
                    if p.split not in loaded:
                        raise ValueError(f"{where}: no split {p.split!r}; the folder has {', '.join(loaded)}")
                    loaded = loaded[p.split]
                return loaded.to_iterable_dataset() if p.streaming else loaded
            return datasets.load_dataset(str(local) if local else p.dataset, p.config, split=p.split,
                                         streaming=p.streaming, revision=p.revision)
        except DatasetNotFoundError:
            raise HubUnavailableError(f"{where}: no such dataset on the Hugging Face Hub (or it is gated/private: "
                                      "log in with `hf auth login`); a local folder path also works") from None
        except ConnectionError as exc:
            raise HubUnavailableError(
                f"{where}: the Hugging Face Hub is unreachable ({_cause(exc)}). Check the network, or point "
                "'dataset' at a local folder (save_to_disk output or JSON/CSV/Parquet files); with "
                "HF_HUB_OFFLINE=1 only datasets already in the local cache load") from None
        except ValueError as exc:
            if "split" in str(exc).lower():
                raise HubUnavailableError(f"{where}: {exc}") from None
            raise HubDataError(self._describe(exc, "could not load the dataset")) from None
        except DatasetGenerationError as exc:
            raise HubDataError(self._describe(exc, "could not load the dataset")) from None
        except StopIteration:  # what datasets raises for a data folder whose files are all empty
            raise HubDataError("datasets found no records: the data files are empty") from None


def _cause(exc: BaseException) -> str:
    """The short reason datasets gives ("OfflineModeIsEnabled", "LocalEntryNotFoundError")."""
    text = str(exc)
    return text[text.rfind("(") + 1: text.rfind(")")] if "(" in text else type(exc).__name__
