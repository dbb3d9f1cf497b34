"""The one error hierarchy the command line knows: a problem the user can fix.

Any exception deriving from :class:`UserError` is printed by ``meddata`` as one line naming
what to change (exit code 2), without a traceback. Library code raises its own subclasses
(recipe, config, build-folder, Hub errors), so callers can still catch them precisely. This
module imports nothing from meddata, so every other module may import it without a loop.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input, configuration or environment; the message says what to do."""


class RecipeError(UserError, ValueError):
    """A recipe is invalid. The message is meant for the user, as is."""


class MissingDependencyError(RecipeError, ImportError):
    """A step, engine or backend the recipe names needs an optional extra that is not
    installed; the message names the component and the ``pip install`` that fixes it."""


class StepSetupError(UserError, RuntimeError, ValueError):
    """A step could not prepare itself (load a model, read a vocabulary) on a worker; the
    message names the step and, for a missing library, the install hint. Also a RuntimeError
    and a ValueError: what setup() raised before it was wrapped, so callers that caught
    those still do."""
