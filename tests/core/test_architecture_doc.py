"""docs/ARCHITECTURE.md's "Adding a step" works as written: its step file registers and its
test passes against the real pipeline; and the page points at nothing outside the repository."""

from __future__ import annotations

import re
import types

import pytest
from testutil import ROOT

from meddata import registry

DOC = ROOT / "docs" / "ARCHITECTURE.md"


def _blocks() -> list[str]:
    section = DOC.read_text(encoding="utf-8").split("## Adding a step", 1)[1]
    return re.findall(r"```python\n(.*?)```", section, re.S)


@pytest.fixture
def doc_step():
    step_code, _ = _blocks()
    module = types.ModuleType("meddata.filters.max_turns_from_doc")
    exec(compile(step_code, "ARCHITECTURE.md step", "exec"), module.__dict__)
    yield module
    registry.STEPS._items.pop("max_turns", None)


def test_the_adding_a_step_example_runs(doc_step, build):
    _, test_code = _blocks()
    namespace: dict = {}
    exec(compile(test_code, "ARCHITECTURE.md test", "exec"), namespace)
    tests = [fn for name, fn in namespace.items() if name.startswith("test_")]
    assert len(tests) == 1
    tests[0](build)
    assert registry.get("max_turns") is doc_step.MaxTurns


def test_the_page_points_nowhere_outside_the_repository():
    text = DOC.read_text(encoding="utf-8")
    assert not re.search(r"\.\./|/work/|shared/DESIGN", text)
