"""What the de-id rule tests share: the rules-only detector, built once per session."""

from __future__ import annotations

import pytest
from meddata.filters.deid.detector import Detector, config_for


@pytest.fixture(scope="session")
def rules() -> Detector:
    """Safe Harbor rules alone (no spaCy model, no learned model): what a rule test measures."""
    return Detector(config_for("safe_harbor", model="off", learned="off"))

