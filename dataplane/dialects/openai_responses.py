"""OpenAI Responses dialect (/v1/responses): same family and error JSON as chat, different usage and stream.

Usage is `{input_tokens, input_tokens_details.cached_tokens, output_tokens,
output_tokens_details.reasoning_tokens}`; in a stream it arrives once, inside the
terminal event's `response` (response.completed / .incomplete / .failed). Stream
events are typed SSE (`event: response.output_text.delta`); a gateway error
mid-stream is an `event: error` as the API sends it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from .base import EndpointSpec, Usage
from .openai import OpenAIAPI
from .openai import usage_from_obj as chat_usage_from_obj
from .sse import SSEScanner, usage_events, write_typed

_TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})


USAGE_FIELDS = ("input_tokens", "input_tokens_details", "output_tokens", "output_tokens_details")


def usage_from_obj(u: Any) -> Usage:
    return chat_usage_from_obj(u, USAGE_FIELDS)


class ResponsesStreamScanner(SSEScanner):
    __slots__ = ()

    def feed(self, chunk: bytes) -> bytes:
        done = self._sse.complete(chunk)
        if done:
            # response.created/in_progress carry "usage": null, which the byte scan already skips
            for _start, _end, payload in usage_events(done):
                resp = payload.get("response")
                if payload.get("type") in _TERMINAL and isinstance(resp, dict):
                    self.usage = usage_from_obj(resp.get("usage"))
        return chunk


_ENDPOINTS = (EndpointSpec("POST", "/v1/responses", "responses"),
              EndpointSpec("POST", "/v1/responses/input_tokens", "count_tokens"))


class OpenAIResponsesDialect(OpenAIAPI):
    """Same family, request shape (model/stream in the body), error JSON and model list as chat completions
    (its clients list models at /v1/models, which the chat dialect answers)."""

    __slots__ = ()
    name = "openai_responses"

    def endpoints(self) -> Sequence[EndpointSpec]:
        return _ENDPOINTS

    write_events = staticmethod(write_typed)  # the writer itself: no extra call per translated chunk

    def stream_error_event(self, kind: str, message: str) -> bytes:
        err = orjson.loads(self.error_body(0, kind, message))["error"]
        # `type/code/message` is the Responses error event; `error` makes the official SDKs raise.
        payload = {"type": "error", "code": err["code"], "message": message, "param": None, "error": err}
        return b"event: error\ndata: " + orjson.dumps(payload) + b"\n\n"

    def usage_from_body(self, body: dict[str, Any]) -> Usage:
        return usage_from_obj(body.get("usage"))

    def stream_scanner(self, strip_usage: bool = False) -> ResponsesStreamScanner:
        return ResponsesStreamScanner()  # the terminal event always carries usage; nothing to strip

    def max_output_tokens(self, body: dict[str, Any]) -> int | None:
        v = body.get("max_output_tokens")
        return v if isinstance(v, int) else None
