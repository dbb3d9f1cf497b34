"""Errors of the LLM client that stop a build. They are recipe errors (one line, exit 2
from the CLI) because the fix is always in the recipe: a key, an endpoint, a missing step."""

from __future__ import annotations

from meddata.errors import RecipeError


class LLMConfigError(RecipeError):
    """An entry of the recipe's ``llms`` section is invalid; the message names the LLM and key."""


class PHIGuardError(RecipeError):
    """Requests built from raw-PHI rows were about to leave this machine. Raised before any
    connection is opened."""
