"""Parameter types shared by steps, and the one-line form of their validation errors.
Paths in a recipe are relative to the recipe's folder."""

from __future__ import annotations

import difflib
import enum
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ValidationError, ValidationInfo
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined


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


def unknown_keys(data: Any, model: type[BaseModel], prefix: str, what: str = "key") -> str | None:
    """One line per key of ``data`` that ``model`` does not accept, with the nearest known key
    (``r.yaml: unknown field 'input'; did you mean 'inputs'?``) or the allowed ones; None when
    every key is known (or ``model`` accepts extra keys)."""
    if not isinstance(data, Mapping) or model.model_config.get("extra") != "forbid":
        return None
    allowed = [info.alias or name for name, info in model.model_fields.items()]
    known = set(allowed) | set(model.model_fields)
    lines = []
    for key in data:
        if key in known:
            continue
        close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}?" if close else f"allowed: {', '.join(allowed)}"
        lines.append(f"{prefix}: unknown {what} {str(key)!r}; {hint}")
    return "\n".join(lines) or None


def error_message(error: Mapping[str, Any]) -> str:
    """pydantic's message for one error without its "Value error, " / "Assertion failed, "
    prefix: the message a validator raised is already the sentence for the user."""
    msg = str(error.get("msg", ""))
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    return msg


def format_validation(err: ValidationError, prefix: str, what: str = "parameter",
                      loc: Callable[[tuple], str] = dotted_loc) -> str:
    """One line per error, ``<prefix>: <what> '<location>': <message>``, for recipes and configs
    alike. The offending input is never included: it may be a value from a clinical row."""
    return "\n".join(f"{prefix}: {what} '{loc(e['loc'])}': {error_message(e)}"
                     for e in err.errors(include_url=False, include_input=False))


# --------------------------------------------------------------------------- describing parameters


def type_name(annotation: Any) -> str:
    """A parameter type as a recipe writer reads it: ``str``, ``int | None``,
    ``'filter' | 'annotate'``, ``list[str]``; validators and module paths left out."""
    if annotation is None or annotation is type(None):
        return "None"
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        return type_name(args[0])
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        inner = ", ".join("..." if a is Ellipsis else type_name(a) for a in args)
        return f"{name}[{inner}]" if args else name
    if isinstance(annotation, type):
        if issubclass(annotation, enum.Enum):
            return " | ".join(repr(m.value) for m in annotation)
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def default_text(info: FieldInfo) -> str:
    """``required`` or ``default <value>``, calling a default factory for its value."""
    if info.is_required():
        return "required"
    if info.default_factory is not None:
        try:
            value = info.default_factory()  # type: ignore[call-arg]
        except TypeError:  # a factory that wants the validated data: no fixed default
            return "default computed"
    else:
        value = info.default
    if value is PydanticUndefined:
        return "required"
    if isinstance(value, BaseModel):
        value = value.model_dump()
    if isinstance(value, enum.Enum):
        value = value.value
    return f"default {value!r}"


def describe_params(model: type[BaseModel]) -> list[tuple[str, str, str]]:
    """(recipe key, type name, default text) per parameter; the key is the alias a recipe
    writes (``as``), not the Python name (``as_``)."""
    return [(info.alias or name, type_name(info.annotation), default_text(info))
            for name, info in model.model_fields.items()]
