"""A helper the de-id rule tests share (their ``rules`` detector is a fixture in
tests/filters/deid/conftest.py)."""

from __future__ import annotations

from meddata.filters.deid.detector import Detector


def flagged(det: Detector, text: str) -> dict[str, str]:
    """Each flagged span's text -> its PHI type."""
    return {text[s.start:s.end]: s.type for s in det.detect(text)}
