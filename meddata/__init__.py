"""meddata: build medical instruction sets for open LLMs, and fine-tune on them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from meddata._version import __version__

__all__ = ["BuildResult", "Recipe", "RecipeError", "__version__", "build", "from_dict", "load", "run"]

# The public API is imported on first use (PEP 562), so `meddata --help` and the light verbs
# do not pay for `datasets`/`pandas` at start-up. `run` writes the dataset, stats and logs
# (the core); `build` also writes the card and tool configs, as `meddata build` does.
_LAZY = {"BuildResult": "meddata.pipeline", "run": "meddata.pipeline", "build": "meddata.publish",
         "Recipe": "meddata.recipe",
         "RecipeError": "meddata.recipe", "from_dict": "meddata.recipe", "load": "meddata.recipe"}

if TYPE_CHECKING:
    from meddata.pipeline import BuildResult, run
    from meddata.publish import build
    from meddata.recipe import Recipe, RecipeError, from_dict, load


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'meddata' has no attribute {name!r}")
