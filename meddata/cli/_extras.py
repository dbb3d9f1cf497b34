"""One line instead of a traceback when a verb needs an optional extra that is not installed.

Verbs import heavy libraries lazily; a missing one surfaces as ModuleNotFoundError deep in
the stack. :func:`needs_extras` turns it into a :class:`~meddata.cli.CliError` that names
the module and the pip line that installs it: ``install "meddata[report]"``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from meddata import extras
from meddata.extras import extra_of


def install_hint(exc: ModuleNotFoundError) -> str | None:
    """``'matplotlib is not installed; pip install "meddata[report]"'`` for a module an extra
    provides (:mod:`meddata.extras`), None for any other missing module (a real bug, which
    keeps its traceback)."""
    if extra_of(exc.name or "") is None:
        return None
    return extras.install_hint(exc.name or "")


def needs_extras(func: Callable[..., int]) -> Callable[..., int]:
    """Decorate a verb's ``cmd_*`` function (see the module docstring)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> int:
        from meddata.cli import CliError

        try:
            return func(*args, **kwargs)
        except ModuleNotFoundError as exc:
            hint = install_hint(exc)
            if hint is None:
                raise
            raise CliError(hint) from None

    return wrapper
