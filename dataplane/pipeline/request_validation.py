"""Typed fields checked at the boundary, so what is forwarded is what is metered.

An upstream that coerces types (vLLM/pydantic turn `"stream": "true"` or `1` into True) would otherwise
stream an answer the gateway relays as non-streaming and meters as nothing; a string `max_tokens` would
skip the budget's worst-case reservation. Each API's fields that steer metering, budgets or routing must
have the type the API defines, or the request is refused with a 400 in the client's dialect.

Nesting: orjson parses 1,024 levels but serialises at most 254; attempt.py turns that serialisation error into
a 400 (checking depth here would cost a pass over every body, ~2 us per KB).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dataplane.dialects.client_errors import bad_request

MAX_MODEL = 256  # longer than any policy name (128): refused rather than stored in every usage event

_BOOL = (bool,)
_STR = (str,)
_INT = (int,)  # bool is an int subclass: refused separately
_NUM = (int, float)
_OBJ = (dict,)
_LIST = (list,)
_TEXT_OR_LIST = (str, list)
_WHAT = {_BOOL: "a boolean (true or false)", _STR: "a string", _INT: "an integer", _NUM: "a number",
         _OBJ: "an object", _LIST: "an array", _TEXT_OR_LIST: "a string or an array"}

# field -> allowed JSON types (null is always allowed: the APIs treat it as absent)
_CHAT = {"model": _STR, "stream": _BOOL, "messages": _LIST, "max_tokens": _INT, "max_completion_tokens": _INT,
         "n": _INT, "temperature": _NUM, "top_p": _NUM, "stream_options": _OBJ, "metadata": _OBJ, "tools": _LIST,
         "user": _STR}
_RESPONSES = {"model": _STR, "stream": _BOOL, "input": _TEXT_OR_LIST, "max_output_tokens": _INT,
              "temperature": _NUM, "metadata": _OBJ, "tools": _LIST, "instructions": _STR}
_EMBEDDINGS = {"model": _STR, "input": _TEXT_OR_LIST, "dimensions": _INT}
_MESSAGES = {"model": _STR, "stream": _BOOL, "messages": _LIST, "max_tokens": _INT, "metadata": _OBJ,
             "system": _TEXT_OR_LIST, "temperature": _NUM, "tools": _LIST}
_COUNT = {"model": _STR, "messages": _LIST, "system": _TEXT_OR_LIST, "tools": _LIST}
_GEMINI = {"contents": _LIST, "generationConfig": _OBJ, "systemInstruction": _OBJ, "labels": _OBJ, "tools": _LIST}
_GEMINI_CONFIG = {"maxOutputTokens": _INT, "candidateCount": _INT, "temperature": _NUM}

# (dialect family, endpoint operation) -> field types; the Gemini streaming switch is the URL method
# (streamGenerateContent, with alt=sse enforced by the router), so it has no body field to check.
SCHEMAS: Mapping[tuple[str, str], Mapping[str, tuple[type, ...]]] = {
    ("openai", "chat"): _CHAT,
    ("openai", "responses"): _RESPONSES,
    ("openai", "embeddings"): _EMBEDDINGS,
    ("anthropic", "messages"): _MESSAGES,
    ("anthropic", "count_tokens"): _COUNT,
    ("gemini", "generate"): _GEMINI,
    ("gemini", "count_tokens"): {"contents": _LIST, "generateContentRequest": _OBJ},
}
_NESTED = {("gemini", "generate"): ("generationConfig", _GEMINI_CONFIG)}


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    return {int: "a number", float: "a number", dict: "an object", list: "an array"}.get(type(value), type(value).__name__)


def _check_fields(body: Mapping[str, Any], schema: Mapping[str, tuple[type, ...]], where: str) -> None:
    # Over the body's few keys, not the schema's many; exact types: orjson yields only builtins, and
    # type(True) is bool, never int, so `"max_tokens": true` is refused too.
    for name, value in body.items():
        types = schema.get(name)
        if types is not None and value is not None and type(value) not in types:
            raise bad_request(f"{where}{name!r} must be {_WHAT[types]}, got {_describe(value)}")


def validate(family: str, operation: str, body: Mapping[str, Any]) -> None:
    """Raise a 400 GatewayError when a typed field does not have the type its API defines."""
    schema = SCHEMAS.get((family, operation))
    if schema is not None:
        _check_fields(body, schema, "")
        nested = _NESTED.get((family, operation))
        if nested is not None and isinstance(sub := body.get(nested[0]), dict):
            _check_fields(sub, nested[1], f"{nested[0]}.")
    model = body.get("model")
    if isinstance(model, str) and len(model) > MAX_MODEL:
        raise bad_request(f"'model' is longer than {MAX_MODEL} characters")

