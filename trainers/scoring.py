"""Scoring primitives: option log-likelihood (lm-eval style), greedy generation, answer
extraction from free text, ROUGE-L.

Log-likelihood follows lm-evaluation-harness: the context and the continuation are encoded
together and the continuation's tokens are those of the whole beyond the context's, so a
BPE merge at the boundary cannot shift tokens between them; a trailing space of the context
moves to the continuation. Each request's sum of log-probabilities is independent of how
requests are batched and padded (right padding, per-row attention masks).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class LoglikResult:
    logprob: float  # sum over the continuation's tokens
    n_tokens: int
    is_greedy: bool  # every continuation token is the argmax


def encode_pair(tokenizer: Any, context: str, continuation: str, add_special_tokens: bool = True
                ) -> tuple[list[int], list[int]]:
    """(context ids, continuation ids) as lm-eval's ``_encode_pair`` makes them."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = tokenizer(context + continuation, add_special_tokens=add_special_tokens)["input_ids"]
    ctx = tokenizer(context, add_special_tokens=add_special_tokens)["input_ids"]
    return ctx, whole[len(ctx):]


def loglikelihood(model: Any, tokenizer: Any, requests: Sequence[tuple[str, str]], *, batch_size: int = 8,
                  max_length: int | None = None, add_special_tokens: bool = True) -> list[LoglikResult]:
    """Log-likelihood of each ``(context, continuation)`` under ``model``.

    Requests whose model input is the same (the options of one question when every option
    is a single token, e.g. " A".." D" or " yes"/" no"/" maybe") share one forward pass.
    """
    import torch

    max_len = max_length or getattr(model.config, "max_position_embeddings", 2048)
    encoded: list[tuple[list[int], int]] = []
    for context, continuation in requests:
        ctx, cont = encode_pair(tokenizer, context, continuation, add_special_tokens)
        if not cont:
            raise ValueError("a continuation encodes to no tokens; an option text is empty")
        ids = (ctx + cont)[-(max_len + 1):]  # left-truncate, keep the whole continuation
        encoded.append((ids, len(cont)))
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, (ids, _) in enumerate(encoded):
        groups.setdefault(tuple(ids[:-1]), []).append(i)
    inputs = sorted(groups, key=len, reverse=True)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = next(model.parameters()).device
    results: list[LoglikResult | None] = [None] * len(encoded)
    with torch.no_grad():
        for start in range(0, len(inputs), batch_size):
            batch = inputs[start:start + batch_size]
            width = len(batch[0])
            input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
            attention = torch.zeros((len(batch), width), dtype=torch.long)
            for row, ids in enumerate(batch):
                input_ids[row, :len(ids)] = torch.tensor(ids)
                attention[row, :len(ids)] = 1
            logits = model(input_ids=input_ids.to(device), attention_mask=attention.to(device)).logits
            for row, key in enumerate(batch):
                n_in = len(key)
                for i in groups[key]:
                    ids, n_cont = encoded[i]
                    targets = torch.tensor(ids[-n_cont:], device=logits.device)
                    # positions n_in - n_cont .. n_in - 1 predict the continuation's tokens
                    span = torch.log_softmax(logits[row, n_in - n_cont:n_in].float(), dim=-1)
                    token_lp = span.gather(1, targets.unsqueeze(1)).squeeze(1)
                    greedy = bool((span.argmax(dim=-1) == targets).all())
                    results[i] = LoglikResult(float(token_lp.sum()), n_cont, greedy)
    return [r for r in results if r is not None]


def generate(model: Any, tokenizer: Any, prompts: Sequence[str], *, max_new_tokens: int = 32,
             batch_size: int = 8, add_special_tokens: bool = True) -> list[str]:
    """Greedy continuations of ``prompts`` (left-padded batches), special tokens removed.
    Prompts longer than the model's window lose their beginning (the question stays)."""
    import torch

    device = next(model.parameters()).device
    window = getattr(model.config, "max_position_embeddings", None) or 4096
    max_prompt = max(8, window - max_new_tokens)
    outputs: list[str] = []
    side, trunc_side = tokenizer.padding_side, tokenizer.truncation_side
    tokenizer.padding_side = tokenizer.truncation_side = "left"
    try:
        for start in range(0, len(prompts), batch_size):
            chunk = list(prompts[start:start + batch_size])
            enc = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=add_special_tokens,
                            truncation=True, max_length=max_prompt)
            enc = {k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
            with torch.no_grad():
                out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                     pad_token_id=tokenizer.pad_token_id)
            new = out[:, enc["input_ids"].shape[1]:]
            outputs.extend(tokenizer.batch_decode(new, skip_special_tokens=True))
    finally:
        tokenizer.padding_side, tokenizer.truncation_side = side, trunc_side
    return outputs


# --------------------------------------------------------------------------- answer extraction

# "The answer is (C).", "answer: c", "Correct option is C", "the correct answer is: **C**"
_EXPLICIT = (r"(?:answer|option|choice)\s*(?:is|would be|=)?\s*[:\-]?\s*(?:option\s*|choice\s*)?"
             r"[\*\(\[\s]*({L})(?![A-Za-z])")
# "C) ...", "(C) ...", "C. ...", "C: ...", "**C** ...", "C - ...", "c"
_LEADING = r"^\s*(?:\*\*|\(|\[)?\s*({L})\s*(?:\*\*|[).:\]]|$|-\s)"
_BOLD = r"\*\*\s*\(?({L})\)?[.:)]?\s*\*\*"
_LONE = r"(?<![A-Za-z'])({L})(?=[).:,]|\s*$|\s*\n)"


def extract_choice(text: str, labels: Sequence[str], options: Sequence[tuple[str, str]] = ()) -> str | None:
    """The option label a free-text answer picks, or None when it does not pick exactly one.

    Handles "The answer is (C).", "C) ...", "(C)", "**C**", "Answer: c", "C.", "Option C",
    and an answer that quotes exactly one option's text. A lower-case letter followed by a
    word ("the answer is a lack of ...") is an article, not option A.
    """
    if not text or not labels:
        return None
    letters = "".join(re.escape(label) for label in labels)
    cls = f"[{letters}]" if all(len(label) == 1 for label in labels) else "|".join(map(re.escape, labels))
    upper = {label.upper(): label for label in labels}
    for m in re.finditer(_EXPLICIT.format(L=cls), text, flags=re.IGNORECASE):
        letter = m.group(1)
        if letter.islower() and re.match(r"\s+[A-Za-z]", text[m.end():]):
            continue
        return upper.get(letter.upper())
    m = re.search(_LEADING.format(L=cls), text, flags=re.IGNORECASE)
    if m:
        return upper.get(m.group(1).upper())
    bold = {b.upper() for b in re.findall(_BOLD.format(L=cls), text, flags=re.IGNORECASE)}
    if len(bold) == 1:
        return upper.get(bold.pop())
    if options:
        low = " ".join(text.lower().split())
        quoted = [label for label, opt in options if opt and " ".join(opt.lower().split()) in low]
        if len(quoted) == 1:
            return quoted[0]
    lone = set(re.findall(_LONE.format(L=cls), text))
    if len(lone) == 1:
        return upper.get(lone.pop().upper())
    return None


_DECISION = r"\b(yes|no|maybe)\b"


def extract_decision(text: str) -> str | None:
    """yes / no / maybe from a free-text answer (PubMedQA), or None."""
    if not text:
        return None
    low = text.lower()
    m = re.search(r"(?:answer|decision|conclusion)\s*(?:is|:)?\s*[:\-]?\s*\**\s*" + _DECISION, low)
    if m:
        return m.group(1)
    m = re.match(r"^\W*" + _DECISION, low)
    if m:
        return m.group(1)
    found = set(re.findall(_DECISION, low))
    return found.pop() if len(found) == 1 else None


# --------------------------------------------------------------------------- ROUGE

def rouge_l(predictions: Sequence[str], references: Sequence[str]) -> list[float]:
    """ROUGE-L F1 per pair (rouge-score, Porter stemming), as in summarisation papers."""
    import logging

    from rouge_score import rouge_scorer

    logging.getLogger("absl").setLevel(logging.WARNING)  # rouge-score logs every scorer it builds
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return [scorer.score(ref, pred)["rougeL"].fmeasure for pred, ref in zip(predictions, references, strict=True)]


@dataclass
class BenchResult:
    """One model on one benchmark in one mode: per-item scores, aligned with ``item_ids``."""

    benchmark: str
    model: str
    mode: str  # loglik / generate / freetext
    item_ids: list[str]
    subjects: list[str | None]
    scores: dict[str, list[float]]
    extra: dict[str, Any] = field(default_factory=dict)
