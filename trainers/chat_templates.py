"""Named chat templates and fitting one onto a model + tokenizer.

A base checkpoint often has no chat template, and most shipped templates lack the
``{% generation %}`` markers TRL needs for assistant-only loss. The templates here have
them. Applying a template adds its special tokens when the tokenizer lacks them (resizing
the embeddings) and makes the end-of-turn token the EOS, so generation stops after a turn.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TEMPLATE_DIR = Path(__file__).parent / "templates"


@dataclass(frozen=True)
class ChatTemplate:
    """A chat template and the tokens it needs. ``end_of_turn`` is None for user files."""

    name: str
    source: str
    special_tokens: tuple[str, ...] = ()
    end_of_turn: str | None = None


_NAMED: dict[str, tuple[tuple[str, ...], str]] = {
    "chatml": (("<|im_start|>", "<|im_end|>"), "<|im_end|>"),
    "llama-3": (("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"), "<|eot_id|>"),
}
_ALIASES = {"llama3": "llama-3", "llama-3.1": "llama-3", "chat-ml": "chatml", "qwen": "chatml"}
NAMES = tuple(_NAMED)


def is_named(spec: str) -> bool:
    return spec.lower() in _NAMED or spec.lower() in _ALIASES


def resolve(spec: str, base_dir: Path | None = None) -> ChatTemplate:
    """A template by name (``chatml``, ``llama-3``) or from a ``.jinja`` file path."""
    key = _ALIASES.get(spec.lower(), spec.lower())
    if key in _NAMED:
        tokens, eot = _NAMED[key]
        return ChatTemplate(key, (TEMPLATE_DIR / f"{key}.jinja").read_text(encoding="utf-8"), tokens, eot)
    path = Path(spec)
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    if path.suffix not in (".jinja", ".j2"):
        raise ValueError(f"unknown chat template {spec!r}: use one of {', '.join(NAMES)} or a .jinja file")
    if not path.is_file():
        raise FileNotFoundError(f"chat template file {path} does not exist")
    return ChatTemplate(path.name, path.read_text(encoding="utf-8"))


def template_source(spec: str, base_dir: Path | None = None) -> str:
    return resolve(spec, base_dir).source


def has_generation_markers(source: str | None) -> bool:
    return bool(source) and re.search(r"\{%-?\s*generation\s*-?%\}", source) is not None


def missing_tokens(tokenizer: Any, template: ChatTemplate) -> list[str]:
    vocab = tokenizer.get_vocab()
    return [t for t in template.special_tokens if t not in vocab]


def fit_tokenizer(tokenizer: Any, template: ChatTemplate) -> list[str]:
    """Set the template on the tokenizer, add its missing special tokens, make its
    end-of-turn token the EOS. Returns the tokens that were added (the model must grow)."""
    added = missing_tokens(tokenizer, template)
    if added:
        tokenizer.add_special_tokens({"extra_special_tokens": added}, replace_extra_special_tokens=False)
    tokenizer.chat_template = template.source
    if template.end_of_turn:
        tokenizer.eos_token = template.end_of_turn
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return added


def fit_model(model: Any, tokenizer: Any, added: list[str]) -> list[int]:
    """Grow the embeddings for ``added`` tokens and align EOS/PAD ids on the model's
    configs (generation stops on the new end-of-turn token or the old EOS). Returns the ids
    of the added tokens, which a LoRA run must make trainable."""
    if added:
        model.resize_token_embeddings(len(tokenizer))
    eos_id = tokenizer.eos_token_id
    text_config = model.config.get_text_config()
    text_config.eos_token_id = eos_id
    text_config.pad_token_id = tokenizer.pad_token_id
    gen = getattr(model, "generation_config", None)
    if gen is not None:
        old = gen.eos_token_id
        old_ids = [] if old is None else [old] if isinstance(old, int) else list(old)
        gen.eos_token_id = [eos_id, *[i for i in old_ids if i != eos_id]]
        gen.pad_token_id = tokenizer.pad_token_id
    return tokenizer.convert_tokens_to_ids(added) if added else []
