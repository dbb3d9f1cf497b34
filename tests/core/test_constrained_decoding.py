"""Schema-constrained decoding in the transformers backend, with the random-init tiny Llama of
test_llm_transformers.py: its unconstrained output is noise that never parses, so every
schema-valid answer here is the decoder's doing. Also: the walker's refusals and the
``response_format: none`` switch that turns constraining off."""

from __future__ import annotations

import pytest

from meddata.llm import ChatRequest
from meddata.llm.client import LLMClient
from meddata.llm.config import parse_config
from meddata.llm.structured import check_output

QA_SCHEMA = {
    "type": "object",
    "properties": {"pairs": {"type": "array", "minItems": 1, "maxItems": 2, "items": {
        "type": "object", "required": ["question", "answer"],
        "properties": {"question": {"type": "string", "minLength": 8}, "answer": {"type": "string", "minLength": 2}}}}},
    "required": ["pairs"],
}
MCQ_SCHEMA = {
    "type": "object", "required": ["answer", "rationale", "confident", "score"],
    "properties": {"answer": {"type": "string", "enum": ["A", "B", "C", "D"]},
                   "rationale": {"type": "string", "minLength": 20},
                   "confident": {"type": "boolean"},
                   "score": {"type": "integer", "minimum": 1, "maximum": 10}},
}


def _client(model_dir, tmp_path, **extra) -> LLMClient:
    cfg = parse_config("tiny", {"backend": "transformers", "model_path": str(model_dir), "device": "cpu",
                                "batch_size": 4, "cache": False, **extra})
    return LLMClient("tiny", cfg, cache_path=None)


def _requests(schema: dict, n: int) -> list[ChatRequest]:
    return [ChatRequest(messages=[{"role": "user", "content": f"Question {i}: what does the heart do?"}],
                        max_tokens=120, json_schema=schema, key=f"r{i}") for i in range(n)]


@pytest.mark.parametrize("schema", [QA_SCHEMA, MCQ_SCHEMA], ids=["passage_qa-shape", "mcq-shape"])
def test_random_model_answers_are_schema_valid_when_constrained(tiny_model, tmp_path, schema):  # noqa: F811
    client = _client(tiny_model, tmp_path)
    try:
        responses = client.generate(_requests(schema, 4))
    finally:
        client.close()
    assert [r.error for r in responses] == [None] * 4
    for req, resp in zip(_requests(schema, 4), responses):
        assert check_output(req, resp.text) == resp.parsed  # the raw text itself is valid JSON of the schema


def test_without_constraint_the_same_model_fails_and_is_reported(tiny_model, tmp_path):  # noqa: F811
    client = _client(tiny_model, tmp_path, response_format="none")
    try:
        responses = client.generate(_requests(MCQ_SCHEMA, 2))
    finally:
        client.close()
    assert all(r.invalid_output and "after one repair retry" in r.error for r in responses)


def test_unsupported_schemas_fall_back_to_free_generation(tiny_model):  # noqa: F811
    from transformers import AutoTokenizer

    from meddata.llm.backends import constrained

    tok = AutoTokenizer.from_pretrained(str(tiny_model))
    vocab = constrained.Vocabulary(tok, len(tok))
    assert constrained.compile_schema({"type": "object", "additionalProperties": {"type": "string"}}, vocab) is None
    assert constrained.compile_schema({"anyOf": [{"type": "string"}, {"type": "null"}]}, vocab) is None
    assert constrained.compile_schema({"type": "integer"}, vocab) is None  # no small range to choose from
    assert constrained.compile_schema(QA_SCHEMA, vocab) is not None


def test_free_strings_never_repeat_a_trigram(tiny_model):  # noqa: F811
    """The in-string repeat guard: a greedy loop is cut, never written out."""
    from transformers import AutoTokenizer

    from meddata.llm.backends import constrained

    tok = AutoTokenizer.from_pretrained(str(tiny_model))
    vocab = constrained.Vocabulary(tok, len(tok))
    row = constrained.RowState(constrained.compile_schema(
        {"type": "object", "required": ["a"], "properties": {"a": {"type": "string"}}}, vocab)(), vocab, 100)
    while not isinstance(row.ins, constrained.FreeString):
        row.consume(row.allowed()[0])
    h, b, c = vocab.plain.nonzero().flatten().tolist()[:3]
    for t in (h, b, c, h, b):
        row.consume(t)
    assert row.banned() == [c]  # 'h b c' is in the string already
    assert row.allowed() == "plain+quote"  # min length 0: the string may also close here
