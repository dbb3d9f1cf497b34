"""Registry of named steps (spaCy-style). Steps register themselves with :func:`register`;
the registry finds them through the ``meddata.steps`` entry-point group, so the core never
imports builders/, filters/ or trainers/ by name and third-party packages can add steps."""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from importlib.metadata import entry_points
from typing import TypeVar

from meddata.steps import Step

S = TypeVar("S", bound=type[Step])

_STEPS: dict[str, type[Step]] = {}
_loaded = False


class UnknownStepError(KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def register(cls: S) -> S:
    """Class decorator: ``@register`` on a Step subclass with ``name`` and ``description``."""
    if not cls.name or not cls.description:
        raise TypeError(f"{cls.__qualname__} needs class attributes 'name' and 'description'")
    existing = _STEPS.get(cls.name)
    if existing is not None and existing.__qualname__ != cls.__qualname__:
        raise ValueError(f"step name {cls.name!r} is taken by {existing.__module__}.{existing.__qualname__}")
    _STEPS[cls.name] = cls
    return cls


def load_plugins() -> None:
    """Import every module named in the ``meddata.steps`` entry-point group, once."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for ep in entry_points(group="meddata.steps"):
        importlib.import_module(ep.value)


def get(name: str) -> type[Step]:
    load_plugins()
    try:
        return _STEPS[name]
    except KeyError:
        close = difflib.get_close_matches(name, _STEPS, n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownStepError(
            f"unknown step {name!r}{hint} (run 'meddata steps' to list all)"
        ) from None


def all_steps() -> dict[str, type[Step]]:
    load_plugins()
    return dict(sorted(_STEPS.items()))


def import_submodules(package: str, path: list[str]) -> None:
    """Import every module of a package so their ``@register`` decorators run.
    Modules keep heavy imports (spaCy, torch) inside functions, so this stays cheap."""
    for info in pkgutil.walk_packages(path, package + "."):
        importlib.import_module(info.name)
