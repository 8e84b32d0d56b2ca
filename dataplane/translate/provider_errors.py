"""A provider's error response in gateway terms: its kind by status, and its human-readable message
(what binding.py and count_tokens.py both report to the client in its own dialect)."""

from __future__ import annotations

import orjson

from dataplane.dialects.base import ErrorKind

_KIND_BY_STATUS = {
    400: ErrorKind.INVALID_REQUEST, 401: ErrorKind.AUTHENTICATION, 403: ErrorKind.PERMISSION,
    404: ErrorKind.NOT_FOUND, 408: ErrorKind.TIMEOUT, 413: ErrorKind.TOO_LARGE, 422: ErrorKind.INVALID_REQUEST,
    429: ErrorKind.RATE_LIMIT, 504: ErrorKind.TIMEOUT, 529: ErrorKind.OVERLOADED,
}


def error_kind(status: int) -> str:
    return _KIND_BY_STATUS.get(status) or (ErrorKind.UPSTREAM if status >= 500 else ErrorKind.INVALID_REQUEST)


def provider_error_message(payload: bytes) -> str:
    """OpenAI, Anthropic and Gemini all put the human-readable text at error.message."""
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        body = None
    err = body.get("error") if isinstance(body, dict) else None
    msg = err.get("message") if isinstance(err, dict) else err if isinstance(err, str) else None
    if isinstance(msg, str) and msg:
        return msg
    return payload[:200].decode("utf-8", "replace") or "the provider returned an error without a body"
