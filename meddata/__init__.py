"""meddata: build medical instruction sets for open LLMs, and fine-tune on them."""

__version__ = "0.1.0"

from meddata.pipeline import BuildResult, run  # noqa: E402
from meddata.recipe import Recipe, RecipeError, from_dict, load  # noqa: E402

__all__ = ["BuildResult", "Recipe", "RecipeError", "__version__", "from_dict", "load", "run"]
