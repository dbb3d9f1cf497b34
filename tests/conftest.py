"""Shared test fixtures. Real data lives in tests/data (see tests/data/*/SOURCES.md)."""

from __future__ import annotations

from pathlib import Path

import pytest
from testutil import ROOT

# Fixtures shared across folders (tests/kits): the tiny random-init Llama.
pytest_plugins = ["tiny_llama"]


@pytest.fixture
def build(tmp_path):
    """Run a recipe given as a dict (paths relative to ``base_dir``, default the repo root) as
    ``meddata build`` does: the pipeline, then the card and tool configs.

    Returns the BuildResult; the build folder is ``tmp_path / "out"``. Unlike the API's
    default it returns the result of a failed build too (``strict=False``), because most bad-input
    tests inspect what was quarantined; pass ``strict=True`` to check the API's default.
    """
    from meddata import publish, recipe

    def _build(data: dict, base_dir: Path = ROOT, out: Path | None = None, **kwargs):
        rec = recipe.from_dict(data, base_dir=base_dir, source="test-recipe.yaml")
        return publish.build(rec, out or tmp_path / "out", **{"strict": False, **kwargs})

    return _build
