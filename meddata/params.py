"""Parameter types shared by steps, and the one-line form of their validation errors.
Paths in a recipe are relative to the recipe's folder."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, ValidationError, ValidationInfo


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


def require_known(values: Iterable[str], allowed: Iterable[str], what: str) -> None:
    """Reject names outside ``allowed`` in a parameter validator, listing what is allowed."""
    allowed = list(allowed)
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise ValueError(f"unknown {what}(s) {unknown}; allowed: {', '.join(allowed)}")


def dotted_loc(loc: tuple) -> str:
    """``('output', 'path')`` -> ``output.path``; an empty location is the whole document."""
    return ".".join(str(p) for p in loc) or "(top level)"


def format_validation(err: ValidationError, prefix: str, what: str = "parameter",
                      loc: Callable[[tuple], str] = dotted_loc) -> str:
    """One line per error, ``<prefix>: <what> '<location>': <message>``, for recipes and configs
    alike. The offending input is never included: it may be a value from a clinical row."""
    return "\n".join(f"{prefix}: {what} '{loc(e['loc'])}': {e['msg']}"
                     for e in err.errors(include_url=False, include_input=False))
