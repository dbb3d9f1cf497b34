"""Schema-constrained decoding for the local transformers backend.

A small model (135M parameters) asked for JSON often writes prose, unbalanced braces or the
wrong keys. Here the JSON skeleton is not left to the model: a walker over the request's
JSON schema forces every structural token (braces, keys, commas, quotes), lets the model
choose only where the schema offers a choice (an enum value, an integer in range, whether
an array gets another item) and writes free text only inside strings, where tokens that
would break the JSON (a quote, a backslash, a control character, a brace, end of sequence)
are masked out; the model ends a string with the quote token or a token ending in one
(``."``), and may not repeat a 3-token sequence inside one string (greedy loops). The answer is therefore JSON of the schema's shape by construction; value-level
rules the walker does not enforce (a pattern, a length the budget cut short) are still
checked by :func:`meddata.llm.structured.check_output`, with the client's repair turn and
quarantine reason as before.

Supported: objects with ``properties`` (the ``required`` ones are written, in property
order), arrays with ``items``/``minItems``/``maxItems``, strings (``minLength``,
``maxLength``, ``enum``, ``const``), integers and numbers (``enum``, ``minimum``/``maximum``
up to 200 values), booleans and null. Any other schema makes :func:`compile_schema` return
None and the request is generated unconstrained.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

#: Tokens a free string may take at most when its schema sets no ``maxLength``.
DEFAULT_STRING_TOKENS = 128
#: Tokens kept back at the end of the budget to close the JSON (quotes, brackets, braces).
CLOSING_RESERVE = 24
#: Tokens left at which an open string is closed whatever its length.
MIN_CLOSING = 8
#: A free string may not repeat a token sequence of this length (greedy loops of small models).
REPEAT_NGRAM = 3
#: Largest integer range offered as a choice between its values.
MAX_CHOICES = 200


@dataclass(frozen=True)
class Literal:
    """Tokens forced as they are."""

    ids: tuple[int, ...]


@dataclass(frozen=True)
class Choice:
    """The model picks one of these token sequences (greedy or sampled among them)."""

    options: tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class FreeString:
    """Free text inside a JSON string, ended by the model choosing the closing quote."""

    min_chars: int
    max_tokens: int


class Unsupported(ValueError):
    """The schema uses something the walker cannot force; generate unconstrained."""


Instruction = Literal | Choice | FreeString
Walker = Generator[Instruction, Any, None]


class Vocabulary:
    """Per-tokenizer tables: each token's text, which tokens may appear inside a JSON string,
    the closing-quote token, end of sequence. Built once per loaded tokenizer (about 1 s)."""

    def __init__(self, tokenizer: Any, vocab_size: int):
        import torch

        self.encode: Callable[[str], list[int]] = lambda s: tokenizer.encode(s, add_special_tokens=False)
        self.size = vocab_size
        special = set(tokenizer.all_special_ids) | {i for i in getattr(tokenizer, "added_tokens_decoder", {})}
        texts = [""] * vocab_size
        plain = torch.zeros(vocab_size, dtype=torch.bool)
        closers = torch.zeros(vocab_size, dtype=torch.bool)
        for i in range(min(len(tokenizer), vocab_size)):
            if i in special:
                continue
            text = tokenizer.decode([i])
            texts[i] = text
            if _plain(text):
                plain[i] = True
            elif len(text) > 1 and text.endswith('"') and _plain(text[:-1]):
                closers[i] = True  # '."', '?"': text, then the closing quote
        self.texts = texts
        self.plain = plain
        self.closers = closers
        quote = self.encode('"')
        if len(quote) != 1:
            raise Unsupported("the tokenizer has no single-token double quote")
        self.quote = quote[0]
        eos = tokenizer.eos_token_id
        self.eos = eos if eos is not None else tokenizer.pad_token_id
        self.array_ends = (tuple(self.encode("]")), tuple(self.encode("[]")))


def _plain(text: str) -> bool:
    """Text that may stand inside a JSON string as it is. Braces are left out too: in prose they
    are rare, and a small model writes them when it wants to end the value, not the sentence."""
    return bool(text) and not any(c in '"\\{}' or ord(c) < 0x20 for c in text)


def compile_schema(schema: dict | None, vocab: Vocabulary) -> Callable[[], Walker] | None:
    """A factory of walkers for ``schema``, or None when it cannot be forced (checked up front
    by a dry walk with every choice taking its first option)."""
    if not isinstance(schema, dict):
        return None
    try:
        _dry_run(_tokens(_walk(schema), vocab))
    except Unsupported:
        return None
    return lambda: _tokens(_walk(schema), vocab)


def _dry_run(walker: Walker) -> None:
    try:
        ins = next(walker)
        for _ in range(10_000):
            ins = walker.send(0 if isinstance(ins, Choice) else None)
    except StopIteration:
        return


def _tokens(texts: Generator[Any, Any, None], vocab: Vocabulary) -> Walker:
    """Tokenise the text walker's output: consecutive literal pieces are joined first, so the
    forced tokens are the ones the tokenizer itself would use (``{"answer": "`` as one piece,
    not ``{"answer":`` then `` "``, a split the model never saw in training)."""
    pending = ""
    value = None
    try:
        item = next(texts)
        while True:
            if isinstance(item, str):
                pending += item
                item = texts.send(None)
                continue
            if pending:
                yield Literal(tuple(vocab.encode(pending)))
                pending = ""
            if isinstance(item, Choice):  # options arrive as text
                value = yield Choice(tuple(tuple(vocab.encode(o)) for o in item.options))
            else:
                value = yield item
            item = texts.send(value)
    except StopIteration:
        if pending:
            yield Literal(tuple(vocab.encode(pending)))


def _walk(schema: dict) -> Generator[Any, Any, None]:
    """Yield what writes one JSON value of ``schema``: literal text (``str``), a
    :class:`Choice` between texts (the chosen index is sent back) or a :class:`FreeString`."""
    if "const" in schema:
        yield json.dumps(schema["const"], ensure_ascii=False)
        return
    if "enum" in schema:
        values = list(schema["enum"])
        if not values:
            raise Unsupported("empty enum")
        if all(isinstance(v, str) for v in values):  # the opening quote joins the literal before
            yield '"'
            yield Choice(tuple(json.dumps(v, ensure_ascii=False)[1:] for v in values))
        else:
            yield Choice(tuple(json.dumps(v, ensure_ascii=False) for v in values))
        return
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties")
        if not isinstance(props, dict) or not props:
            raise Unsupported("object without properties")
        required = schema.get("required")
        if required and any(k not in props for k in required):
            raise Unsupported("required key without a property schema")
        keys = [k for k in props if required is None or k in required]
        for i, key in enumerate(keys):
            yield ("{" if i == 0 else ", ") + json.dumps(key, ensure_ascii=False) + ": "
            yield from _walk(props[key])
        yield "}" if keys else "{}"
        return
    if kind == "array":
        items = schema.get("items")
        if not isinstance(items, dict):
            raise Unsupported("array without one items schema")
        lo, hi = int(schema.get("minItems", 0)), schema.get("maxItems")
        hi = int(hi) if hi is not None else None
        if lo == 0:
            if (yield Choice(("[]", "["))) == 0:
                return
        else:
            yield "["
        n = 0
        while True:
            yield from _walk(items)
            n += 1
            if hi is not None and n >= hi:
                break
            if n < lo:
                yield ", "
                continue
            if (yield Choice(("]", ", "))) == 0:
                return
        yield "]"
        return
    if kind == "string":
        min_chars = int(schema.get("minLength", 0))
        max_len = schema.get("maxLength")
        max_tokens = max(4, int(max_len) // 2) if max_len is not None else DEFAULT_STRING_TOKENS
        yield '"'
        yield FreeString(min_chars, max_tokens)
        return  # the closing quote is the model's own token
    if kind in ("integer", "number"):
        lo, hi = schema.get("minimum"), schema.get("maximum")
        if lo is None or hi is None or int(hi) - int(lo) + 1 > MAX_CHOICES:
            raise Unsupported("number without a small range")
        yield Choice(tuple(str(v) for v in range(int(lo), int(hi) + 1)))
        return
    if kind == "boolean":
        yield Choice(("true", "false"))
        return
    if kind == "null":
        yield "null"
        return
    raise Unsupported(f"type {kind!r}")


class RowState:
    """Where one row's answer is in its walker; says which tokens may come next."""

    def __init__(self, walker: Walker | None, vocab: Vocabulary, budget: int):
        self.vocab = vocab
        self.walker = walker
        self.budget = budget
        self.used = 0
        self.done = walker is None
        self.ins: Instruction | None = None
        if walker is not None:
            self._advance(None, first=True)

    @property
    def constrained(self) -> bool:
        return self.walker is not None

    def _advance(self, value: Any, first: bool = False) -> None:
        try:
            self.ins = next(self.walker) if first else self.walker.send(value)
        except StopIteration:
            self.ins, self.done = None, True
            return
        self.pos, self.chars, self.tokens = 0, 0, 0
        self.text_ids: list[int] = []
        if isinstance(self.ins, Choice):
            self.cands = list(range(len(self.ins.options)))
        if isinstance(self.ins, FreeString):  # each string may take half of what is left, at most
            self.cap = min(self.ins.max_tokens, max(8, (self.budget - self.used - CLOSING_RESERVE) // 2))
        if isinstance(self.ins, Literal) and not self.ins.ids:
            self._advance(None)

    def allowed(self) -> list[int] | str:
        """Token ids allowed next, or ``"plain"`` / ``"plain+quote"`` for free-string steps."""
        if self.done:
            return [self.vocab.eos]
        ins, left = self.ins, self.budget - self.used
        if isinstance(ins, Literal):
            return [ins.ids[self.pos]]
        if isinstance(ins, Choice):
            if self.pos == 0 and left < self.budget // 3 and ins.options[0] in self.vocab.array_ends:
                self.cands = [0]  # another array item only while a third of the budget is left
            return sorted({ins.options[c][self.pos] for c in self.cands})
        assert isinstance(ins, FreeString)
        if left <= MIN_CLOSING or (self.tokens >= self.cap and self.chars >= ins.min_chars):
            return [self.vocab.quote]
        return "plain" if self.chars < ins.min_chars else "plain+quote"

    def banned(self) -> list[int]:
        """In a free string: tokens that would repeat a 3-gram of this string (a small model's
        greedy loops), so the model must move on or close the string."""
        if not isinstance(self.ins, FreeString) or len(self.text_ids) < REPEAT_NGRAM:
            return []
        ids, n = self.text_ids, REPEAT_NGRAM
        prefix = tuple(ids[-(n - 1):])
        return [ids[k + n - 1] for k in range(len(ids) - n + 1) if tuple(ids[k:k + n - 1]) == prefix]

    def consume(self, token: int) -> None:
        """Record the token chosen at the last step."""
        if self.done:
            return
        self.used += 1
        ins = self.ins
        if isinstance(ins, Literal):
            self.pos += 1
            if self.pos >= len(ins.ids):
                self._advance(None)
        elif isinstance(ins, Choice):
            self.cands = [c for c in self.cands if len(ins.options[c]) > self.pos and ins.options[c][self.pos] == token]
            self.pos += 1
            finished = [c for c in self.cands if len(ins.options[c]) == self.pos]
            if finished or not self.cands:
                self._advance(finished[0] if finished else 0)
        elif token == self.vocab.quote or (token < self.vocab.size and self.vocab.closers[token]):
            self._advance(None)
        else:
            self.tokens += 1
            self.text_ids.append(token)
            self.chars += len(self.vocab.texts[token]) if token < len(self.vocab.texts) else 0


class SchemaLogitsProcessor:
    """A transformers logits processor holding one :class:`RowState` per batch row; rows
    without a state (no schema, or one the walker cannot force) are left alone."""

    def __init__(self, rows: list[RowState]):
        self.rows = rows
        self._started = False

    def __call__(self, input_ids, scores):
        import torch

        if self._started:
            last = input_ids[:, -1].tolist()
            for row, token in zip(self.rows, last):
                row.consume(int(token))
        self._started = True
        for i, row in enumerate(self.rows):
            if not row.constrained:
                continue
            allowed = row.allowed()
            mask = torch.ones(scores.shape[-1], dtype=torch.bool, device=scores.device)
            if isinstance(allowed, str):
                vocab = row.vocab
                ok = vocab.plain | vocab.closers if allowed == "plain+quote" else vocab.plain
                mask[: ok.shape[0]] = ~ok.to(scores.device)
                if allowed == "plain+quote":
                    mask[vocab.quote] = False
                banned = row.banned()
                if banned:
                    mask[banned] = True
            else:
                mask[allowed] = False
            scores[i] = scores[i].masked_fill(mask, float("-inf"))
        return scores
