"""spaCy imported lean for PHI tagging (issue 16: start-up under 1.5 s).

``import_spacy`` holds torch and spaCy's command line off during the import; afterwards both
must import as usual in the same process. Checked in a fresh interpreter, since the test
process may already hold spaCy.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

_SCRIPT = r"""
import importlib.util, sys
from meddata.filters.deid.ner import import_spacy
spacy = import_spacy()
assert spacy is not None
assert "torch" not in sys.modules, "thinc's torch probe ran"
assert "spacy.cli" not in sys.modules and "typer" not in sys.modules, "spaCy's CLI was imported"
nlp = spacy.blank("en")
assert [t.text for t in nlp("Dr. Kohn saw pt.")] == ["Dr.", "Kohn", "saw", "pt", "."]
import spacy.cli
assert callable(spacy.cli.download)
assert callable(spacy.info)
if importlib.util.find_spec("torch") is not None:
    import torch
    assert torch.tensor([1]).sum().item() == 1
print("ok")
"""


def test_lean_spacy_import_restores_torch_and_cli():
    pytest.importorskip("spacy")
    out = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("ok")
