"""One registry of named components (spaCy's catalogue idea): steps, engines, exporters, LLM
backends and trainer stage runners are registered the same way and found the same way.

Each kind is a :class:`Registry` with an entry-point group (``meddata.steps``,
``meddata.engines``, ``meddata.exporters``, ``meddata.llm_backends``,
``meddata.trainer_stages``). meddata's own components register in code, eagerly (a decorator
in the defining module) or lazily (``register_lazy(name, "module:attr")``, so an optional
extra is imported only when used); a third-party package adds one through its group::

    [project.entry-points."meddata.engines"]
    dask = "my_pkg.engine:DaskEngine"      # named object: registered as "dask"
    [project.entry-points."meddata.steps"]
    my_steps = "my_pkg.steps"              # module: imported, its @register decorators run

so the core never imports builders/, filters/ or trainers/ by name.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Iterator
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from meddata.errors import RecipeError

if TYPE_CHECKING:  # the registry is below every kind it holds: steps, engines, backends
    from meddata.steps import Step

T = TypeVar("T")
S = TypeVar("S", bound="type[Step]")


class UnknownComponentError(RecipeError, KeyError):
    """A name that no component of a kind answers to; the message lists close names (a
    :class:`RecipeError`: the fix is a name in the recipe or on the command line)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class UnknownStepError(UnknownComponentError):
    """A recipe names a step that is not registered."""


class Registry(Generic[T]):
    """Named components of one kind. ``kind`` names them in messages; ``group`` is the
    entry-point group third-party packages register through; ``list_hint`` says how to list
    them all."""

    def __init__(self, kind: str, group: str, *, list_hint: str = "",
                 error: type[UnknownComponentError] = UnknownComponentError):
        self.kind, self.group, self.list_hint, self.error = kind, group, list_hint, error
        self._items: dict[str, T] = {}
        self._lazy: dict[str, str] = {}
        self._requires: dict[str, tuple[str, ...]] = {}
        self._loaded = False

    # -- registering --------------------------------------------------------------------------
    def register(self, name: str, obj: T | None = None) -> Any:
        """``registry.register("alpaca", fn)``, or as a decorator ``@registry.register("alpaca")``."""
        if obj is None:
            def decorator(item: T) -> T:
                self.register(name, item)
                return item
            return decorator
        existing = self._items.get(name)
        if existing is not None and _qualname(existing) != _qualname(obj):
            raise ValueError(f"{self.kind} name {name!r} is taken by {_qualname(existing)}")
        self._items[name] = obj
        self._lazy.pop(name, None)
        return obj

    def register_lazy(self, name: str, target: str, *, requires: tuple[str, ...] = ()) -> None:
        """Register ``"package.module:attr"`` under ``name``, imported on first :meth:`get`.
        ``requires``: optional modules it needs, checked when a recipe names it."""
        if name not in self._items:
            self._lazy[name] = target
        if requires:
            self._requires[name] = tuple(requires)

    def requirements(self, name: str) -> tuple[str, ...]:
        """Modules the component ``name`` needs beyond meddata's core (checked without importing it)."""
        return self._requires.get(name, ())

    # -- finding ------------------------------------------------------------------------------
    def load_plugins(self) -> None:
        """Read this kind's entry-point group, once: a ``module:attr`` entry registers that
        object under the entry's name; a plain module entry is imported (it registers itself)."""
        if self._loaded:
            return
        self._loaded = True
        for ep in entry_points(group=self.group):
            if ":" in ep.value:
                self.register_lazy(ep.name, ep.value)
            else:
                importlib.import_module(ep.value)

    def refresh(self) -> None:
        """Read the entry-point group again (a plugin installed while this process runs)."""
        self._loaded = False
        self.load_plugins()

    def names(self) -> list[str]:
        self.load_plugins()
        return sorted({*self._items, *self._lazy})

    def get(self, name: str) -> T:
        self.load_plugins()
        if name not in self._items and name in self._lazy:
            module, _, attr = self._lazy[name].partition(":")
            obj = importlib.import_module(module)
            for part in attr.split("."):
                obj = getattr(obj, part)
            self.register(name, obj)  # type: ignore[arg-type]
        try:
            return self._items[name]
        except KeyError:
            raise self.error(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        names = self.names()
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        if self.list_hint:
            return f"unknown {self.kind} {name!r}{hint} ({self.list_hint})"
        return f"unknown {self.kind} {name!r}{hint} (choose from: {', '.join(names) or 'none'})"

    def all(self) -> dict[str, T]:
        """Every component, imported (lazy ones too)."""
        return {name: self.get(name) for name in self.names()}

    # mapping-style access, so a registry reads like the dict it replaces
    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.names()

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


# -- steps -------------------------------------------------------------------------------------
STEPS: Registry[type[Step]] = Registry("step", "meddata.steps", list_hint="run 'meddata steps' to list all",
                                       error=UnknownStepError)


def register(cls: S) -> S:
    """Class decorator: ``@register`` on a Step subclass with ``name`` and ``description``."""
    if not cls.name or not cls.description:
        raise TypeError(f"{cls.__qualname__} needs class attributes 'name' and 'description'")
    return STEPS.register(cls.name, cls)


def load_plugins() -> None:
    """Import every module named in the ``meddata.steps`` entry-point group, once."""
    STEPS.load_plugins()


def get(name: str) -> type[Step]:
    return STEPS.get(name)


def all_steps() -> dict[str, type[Step]]:
    return STEPS.all()


def import_submodules(package: str, path: list[str]) -> None:
    """Import every module of a package so their ``@register`` decorators run.
    Modules keep heavy imports (spaCy, torch) inside functions, so this stays cheap."""
    for info in pkgutil.walk_packages(path, package + "."):
        importlib.import_module(info.name)

