"""Publishing: what the front door writes about a finished build, on top of the core.

The core (:mod:`meddata.pipeline`) writes the dataset, stats and logs; this package reads
that folder back (:mod:`~meddata.publish.buildinfo`) and writes the dataset card, the
training-tool configs, the HTML report and the Hub push. The core never imports it, so a
build through the Python API stays independent of how it is presented; :func:`build` is
``meddata build``: the pipeline, then the card and tool configs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from meddata.pipeline import BuildResult
    from meddata.recipe import Recipe


def publish(result: BuildResult, recipe: Recipe) -> None:
    """Write the tool configs and (unless ``output.card: false``) the card of a finished build."""
    from meddata.publish.buildinfo import BuildInfo
    from meddata.publish.card import write_card
    from meddata.publish.toolconfigs import write_tool_configs

    write_tool_configs(BuildInfo(result.out_dir).splits, recipe.name, result.out_dir, seed=recipe.seed)
    if recipe.output.card:
        write_card(result, recipe)


def build(recipe: Recipe, out_dir: str | Path | None = None, *, strict: bool = True, **kwargs: Any) -> BuildResult:
    """Run ``recipe`` (options as :func:`meddata.pipeline.run`) and publish the result. A build
    that is not a success raises ``BuildFailed`` (carrying the result) after publishing, so the
    card still says what happened; ``strict=False`` returns the result instead."""
    from meddata.engine.child import in_child
    from meddata.pipeline import BuildFailed, run

    result = run(recipe, out_dir, strict=False, **kwargs)
    if (kwargs.get("num_proc") or recipe.engine.num_proc) > 1:  # as the runner decides (one process: here)
        in_child(publish, result, recipe)  # the card reads every row: not in the driver, whose memory stays flat
    else:
        publish(result, recipe)
    if strict and result.problems:
        raise BuildFailed(result.problems[0], result)
    return result
