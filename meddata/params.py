"""Parameter types shared by steps. Paths in a recipe are relative to the recipe's folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, ValidationInfo


def _base_dir(info: ValidationInfo) -> Path:
    ctx = info.context or {}
    return Path(ctx.get("base_dir") or Path.cwd())


def _resolve_existing(value: str | Path, info: ValidationInfo) -> str:
    p = Path(value).expanduser()
    resolved = p if p.is_absolute() else _base_dir(info) / p
    if not resolved.exists():
        raise ValueError(f"file not found: {value} (looked at {resolved})")
    return str(resolved)


def _resolve(value: str | Path, info: ValidationInfo) -> str:
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else _base_dir(info) / p)


#: A path that must exist when the recipe loads (input files, evaluation sets).
InputPath = Annotated[str, AfterValidator(_resolve_existing)]
#: A path resolved against the recipe folder that may not exist yet (outputs, caches).
OutputPath = Annotated[str, AfterValidator(_resolve)]
