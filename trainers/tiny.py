"""Tiny random-init Llama models with a locally trained tokenizer, for tests and demos.

Nothing is downloaded: the tokenizer is a byte-level BPE trained on the caller's texts
with the ``tokenizers`` library, and the model is built from a ``LlamaConfig``. The result
is saved as an ordinary Hugging Face folder, so every code path (``from_pretrained``,
TRL trainers, evaluation) treats it exactly like a real checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

#: Special tokens of the tiny tokenizer. The chat tokens of both shipped templates are part
#: of the vocabulary, so either template works without resizing the embeddings.
BOS = "<|begin_of_text|>"
EOS = "<|end_of_text|>"
PAD = "<|pad|>"
CHAT_TOKENS = ("<|im_start|>", "<|im_end|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")


def train_tokenizer(texts: Iterable[str], vocab_size: int = 1024, chat_tokens: bool = True):
    """A byte-level BPE tokenizer trained on ``texts`` (a ``PreTrainedTokenizerFast``).

    ``chat_tokens=False`` leaves the chat markers out, which is what a base model looks
    like before a named chat template adds them.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = [BOS, EOS, PAD, *(CHAT_TOKENS if chat_tokens else ())]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        extra_special_tokens=list(CHAT_TOKENS) if chat_tokens else [],
        model_max_length=4096,
    )


def tiny_llama_config(vocab_size: int, *, hidden: int = 64, layers: int = 2, heads: int = 4,
                      max_positions: int = 256, intermediate: int | None = None, **extra):
    """A ``LlamaConfig`` of the requested size (defaults: the CPU test model)."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=intermediate or hidden * 4,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=False,
        **extra,
    )


def build_tiny_llama(
    out_dir: str | Path,
    texts: Iterable[str],
    *,
    vocab_size: int = 1024,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 4,
    max_positions: int = 256,
    intermediate: int | None = None,
    chat_tokens: bool = True,
    chat_template: str | None = None,
    seed: int = 0,
) -> Path:
    """Train a tokenizer on ``texts``, build a random-init Llama around it, save both.

    ``chat_template`` (a template name such as ``"chatml"`` or Jinja source) is stored in
    the tokenizer; by default the model has none, like a base checkpoint.
    """
    import torch
    from transformers import LlamaForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(texts, vocab_size=vocab_size, chat_tokens=chat_tokens)
    if chat_template is not None:
        from meddata.trainers.chat_templates import template_source

        tokenizer.chat_template = template_source(chat_template)
    config = tiny_llama_config(
        len(tokenizer), hidden=hidden, layers=layers, heads=heads, max_positions=max_positions,
        intermediate=intermediate, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
