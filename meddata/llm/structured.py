"""Structured output: find the JSON in an answer, validate it, and write the repair prompt.

Validation errors come in two forms: ``reason`` (a JSON path and the rule that failed, no
values: safe for quarantine files and logs) and ``detail`` (jsonschema's own message, which
quotes the answer; only sent back to the same endpoint in the repair prompt).
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

from meddata.llm.types import ChatRequest

_FENCE = re.compile(r"^```(?:json|JSON)?\s*\n?(.*?)\n?```\s*$", re.S)


class OutputError(ValueError):
    def __init__(self, reason: str, detail: str):
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


def extract_json(text: str) -> Any:
    """Parse an answer as JSON, tolerating a Markdown code fence or prose around one object."""
    s = text.strip()
    m = _FENCE.match(s)
    if m:
        s = m.group(1).strip()
    try:
        return json.loads(s)
    except json.JSONDecodeError as exc:
        first = exc
    start, end = s.find("{"), s.rfind("}")
    if 0 <= start < end:
        try:
            return json.loads(s[start : end + 1])
        except json.JSONDecodeError:
            pass
    raise OutputError(
        f"not valid JSON (line {first.lineno} column {first.colno}: {first.msg})",
        f"it is not valid JSON: {first.msg} at line {first.lineno} column {first.colno}",
    )


@lru_cache(maxsize=256)
def _validator(schema_json: str):
    import jsonschema

    schema = json.loads(schema_json)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def check_output(request: ChatRequest, text: str) -> Any:
    """The parsed answer of a JSON request; raises OutputError when it is unusable."""
    parsed = extract_json(text)
    if request.json_schema is not None:
        import jsonschema

        validator = _validator(json.dumps(request.json_schema, sort_keys=True))
        error = jsonschema.exceptions.best_match(validator.iter_errors(parsed))
        if error is not None:
            rule = error.validator
            limit = error.validator_value if isinstance(error.validator_value, (int, float, str)) else None
            where = error.json_path
            reason = f"JSON does not match the schema at {where}: fails '{rule}'" + (f" ({limit})" if limit is not None else "")
            raise OutputError(reason, f"at {where}: {error.message[:500]}")
    elif request.json_mode and not isinstance(parsed, (dict, list)):
        raise OutputError("JSON answer is not an object or array", "the answer must be a JSON object")
    return parsed


def repair_request(request: ChatRequest, bad_text: str, error: OutputError) -> ChatRequest:
    """The one follow-up turn that asks the model to fix its answer."""
    ask = f"Your previous reply could not be used because {error.detail}. Reply again with only the corrected JSON"
    if request.json_schema is not None:
        ask += " matching this JSON schema: " + json.dumps(request.json_schema, separators=(",", ":"))
    ask += ". No explanations, no code fences."
    return ChatRequest(
        messages=[*request.messages, {"role": "assistant", "content": bad_text}, {"role": "user", "content": ask}],
        temperature=request.temperature, max_tokens=request.max_tokens, seed=request.seed,
        json_schema=request.json_schema, json_mode=request.json_mode,
        phi_status=request.phi_status, key=request.key,
    )
