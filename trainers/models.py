"""Loading models and tokenizers for a stage, building PEFT configs, merging adapters.

Heavy imports stay inside functions: importing ``meddata.trainers`` must not pull in torch.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from meddata.trainers import chat_templates
from meddata.trainers.config import ModelSpec, PeftSpec
from meddata.trainers.hardware import Hardware, compute_dtype

log = logging.getLogger("meddata.trainers")

_DTYPES = {"bfloat16": "bfloat16", "float16": "float16", "float32": "float32"}


def resolve_model_path(name_or_path: str, base_dir: str | Path | None = None) -> str:
    """The folder or Hub id to load for ``name_or_path``: a local model's short name
    (``smollm2-135m-instruct``) or a ``.gguf`` file becomes its cached Hugging Face folder
    (see :mod:`meddata.models`); a path relative to ``base_dir`` that exists becomes absolute;
    anything else (a Hub id) is returned unchanged. Every loader calls this."""
    from meddata.models import is_model_reference, resolve_model

    if is_model_reference(name_or_path):
        return resolve_model(name_or_path, base_dir)
    p = Path(name_or_path).expanduser()
    if not p.is_absolute() and base_dir is not None:
        p = Path(base_dir) / p
    return str(p) if p.exists() else name_or_path


def is_adapter_dir(path: str | Path) -> bool:
    return (Path(path) / "adapter_config.json").is_file()


def load_tokenizer(path: str, spec: ModelSpec, template: chat_templates.ChatTemplate | None):
    """The tokenizer at ``path`` with ``template`` fitted (added tokens are returned too)."""
    from transformers import AutoTokenizer

    path = resolve_model_path(path)
    tokenizer = AutoTokenizer.from_pretrained(path, revision=spec.revision, trust_remote_code=spec.trust_remote_code)
    added: list[str] = []
    if template is not None:
        added = chat_templates.fit_tokenizer(tokenizer, template)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, added


def load_causal_lm(path: str, spec: ModelSpec, hw: Hardware, *, quantize_4bit: bool = False,
                   precision: str = "fp32", device_map: Any = None):
    """A causal LM from ``path``. ``quantize_4bit`` is QLoRA: NF4 weights, double quantisation,
    compute in the run's precision, placed on this process's GPU."""
    from transformers import AutoModelForCausalLM

    path = resolve_model_path(path)
    kwargs: dict[str, Any] = {"revision": spec.revision, "trust_remote_code": spec.trust_remote_code}
    kwargs["dtype"] = _DTYPES.get(spec.dtype, "auto")
    if spec.attn_implementation:
        kwargs["attn_implementation"] = spec.attn_implementation
    if quantize_4bit:
        from transformers import BitsAndBytesConfig

        dtype = compute_dtype(precision if precision in ("bf16", "fp16") else ("bf16" if hw.bf16 else "fp16"))
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
            bnb_4bit_quant_storage=dtype,  # lets FSDP shard the 4-bit weights
        )
        kwargs["dtype"] = dtype
        kwargs["device_map"] = device_map if device_map is not None else {"": hw.local_rank}
    elif device_map is not None:
        kwargs["device_map"] = device_map
    return AutoModelForCausalLM.from_pretrained(path, **kwargs)


def lora_config(spec: PeftSpec, task_type: str = "CAUSAL_LM", added_token_ids: list[int] | None = None):
    """A peft ``LoraConfig``; tokens added for a chat template are made trainable."""
    from peft import LoraConfig

    target = spec.target_modules
    kwargs: dict[str, Any] = {}
    if added_token_ids:
        kwargs["trainable_token_indices"] = {"embed_tokens": list(added_token_ids)}
    return LoraConfig(
        r=spec.r,
        lora_alpha=spec.alpha,
        lora_dropout=spec.dropout,
        target_modules=target if isinstance(target, str) else list(target),
        modules_to_save=list(spec.modules_to_save) if spec.modules_to_save else None,
        task_type=task_type,
        **kwargs,
    )


def prepare_for_kbit(model: Any, gradient_checkpointing: bool) -> Any:
    """peft's QLoRA preparation: norms in fp32, input grads for checkpointing."""
    from peft import prepare_model_for_kbit_training

    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)


def merge_adapter(adapter_dir: Path, base_path: str, spec: ModelSpec, hw: Hardware, precision: str,
                  out_dir: Path, tokenizer: Any) -> Path:
    """Fold a LoRA adapter into full weights (reloading the base unquantised, so a QLoRA
    adapter merges into 16-bit weights rather than into 4-bit ones)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    dtype = compute_dtype(precision) if precision in ("bf16", "fp16") else torch.float32
    base = AutoModelForCausalLM.from_pretrained(resolve_model_path(base_path), dtype=dtype, revision=spec.revision,
                                                trust_remote_code=spec.trust_remote_code)
    if base.get_input_embeddings().weight.shape[0] != len(tokenizer):
        base.resize_token_embeddings(len(tokenizer))
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    merged.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def load_for_inference(path: str | Path, *, device: str | None = None, dtype: str = "auto"):
    """(model, tokenizer) for evaluation: a full checkpoint, a LoRA adapter folder, a local
    model's short name or a ``.gguf`` file."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model_path(str(path))
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch_dtype = _DTYPES.get(dtype, "auto")
    tokenizer = AutoTokenizer.from_pretrained(path)
    if is_adapter_dir(path):
        from peft import AutoPeftModelForCausalLM

        model = AutoPeftModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
        model = model.merge_and_unload()
    else:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
    model.to(device)
    model.eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer
