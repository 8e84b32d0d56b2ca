"""AWS binary event-stream (application/vnd.amazon.eventstream) -> SSE, for Bedrock's streaming APIs.

Frames are parsed and CRC-checked by botocore's EventStreamBuffer. Each event becomes one SSE event
named after its `:event-type`; InvokeModel's `chunk` events carry the model's own event JSON
base64-encoded in `bytes` and are unwrapped (so Anthropic-on-Bedrock streams become plain Anthropic
SSE). Exceptions the service sends mid-stream, and corrupt frames, become an `error` event in the
Anthropic/OpenAI error shape, after which the decoder ignores the rest."""

from __future__ import annotations

import base64
import binascii

import orjson
from botocore.eventstream import EventStreamBuffer, ParserError

# AWS exception names -> dialect-neutral error types that clients understand.
_ERROR_TYPES = {
    "throttlingException": "rate_limit_error",
    "serviceUnavailableException": "overloaded_error",
    "modelStreamErrorException": "api_error",
    "internalServerException": "api_error",
    "validationException": "invalid_request_error",
    "modelTimeoutException": "timeout_error",
}


def sse_event(name: str, data: bytes) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"


def error_event(kind: str, message: str) -> bytes:
    return sse_event("error", orjson.dumps({"type": "error", "error": {"type": kind, "message": message}}))


class EventStreamToSSE:
    """unwrap_chunks: InvokeModel streams (payload {"bytes": base64(event JSON)}); else Converse events."""

    __slots__ = ("_buf", "_failed", "_unwrap")

    def __init__(self, *, unwrap_chunks: bool):
        self._buf = EventStreamBuffer()
        self._unwrap = unwrap_chunks
        self._failed = False

    def feed(self, chunk: bytes) -> bytes:
        if self._failed:
            return b""
        self._buf.add_data(chunk)
        out: list[bytes] = []
        try:
            for msg in self._buf:
                out.append(self._convert(msg.headers, msg.payload))
                if self._failed:
                    break
        except ParserError as exc:  # corrupt frame (CRC, lengths): the rest cannot be trusted
            self._failed = True
            out.append(error_event("api_error", f"the provider's event stream was corrupt ({type(exc).__name__})"))
        return b"".join(out)

    def _convert(self, headers: dict[str, object], payload: bytes) -> bytes:
        kind = headers.get(":message-type", "event")
        if kind != "event":
            self._failed = True
            name = str(headers.get(":exception-type") or headers.get(":error-code") or "internalServerException")
            try:
                message = str(orjson.loads(payload).get("message", name))
            except (orjson.JSONDecodeError, AttributeError):
                message = name
            return error_event(_ERROR_TYPES.get(name, "api_error"), f"{name}: {message}")
        event = str(headers.get(":event-type", "message"))
        if not self._unwrap:
            return sse_event(event, payload)
        if event != "chunk":
            return b""
        try:
            inner = base64.b64decode(orjson.loads(payload)["bytes"], validate=True)
            name = orjson.loads(inner).get("type", "message")
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError, binascii.Error, ValueError):
            self._failed = True
            return error_event("api_error", "the provider sent a stream chunk that is not valid JSON")
        return sse_event(str(name), inner)
