"""One line instead of a traceback when a verb needs an optional extra that is not installed.

Verbs import heavy libraries lazily; a missing one surfaces as ModuleNotFoundError deep in
the stack. :func:`needs_extras` turns it into a :class:`~meddata.cli.CliError` that names
the module and the pip line that installs it: ``install "meddata[report]"``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

#: Top-level module -> the extra (pyproject ``optional-dependencies``) that installs it.
EXTRA_OF_MODULE = {
    "matplotlib": "report", "huggingface_hub": "report",
    "torch": "train", "transformers": "train", "trl": "train", "peft": "train", "accelerate": "train",
    "rouge_score": "train",
    "openai": "llm", "datasketch": "dedup", "spacy": "deid", "ray": "ray",
    "sentence_transformers": "semdedup", "presidio_analyzer": "bench",
}


def install_hint(exc: ModuleNotFoundError) -> str | None:
    """``'matplotlib is not installed; pip install "meddata[report]"'`` for a module an extra
    provides, None for any other missing module (a real bug, which keeps its traceback)."""
    module = (exc.name or "").split(".", 1)[0]
    extra = EXTRA_OF_MODULE.get(module)
    if extra is None:
        return None
    return f'{module} is not installed; pip install "meddata[{extra}]"'


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
