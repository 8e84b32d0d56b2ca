"""AWS Bedrock Converse as a provider dialect: the provider-side Dialect (usage, errors) and the
translators from Anthropic and OpenAI chat clients.

Anthropic <-> Converse is direct (anthropic_to_converse_request, converse_to_anthropic_response). OpenAI chat clients are served
by composing TRANSLATE's OpenAI<->Anthropic modules with it (chat -> messages -> Converse, and back),
so every rule (tool calls, json_schema via a forced tool, include_usage) is defined once.
"""

from __future__ import annotations

from typing import Any

import orjson

from dataplane.dialects.base import Usage
from dataplane.dialects.usage_fields import from_converse

from .anthropic_to_converse_request import translate_request as anthropic_to_converse
from .base import EventTranslator, Params, Session, StatelessSession
from .chain import ChainedEvents
from .converse_to_anthropic_response import ConverseToAnthropicStream
from .converse_to_anthropic_response import translate_response as converse_to_anthropic
from .openai_to_anthropic import OpenAIToAnthropicSession
from .sse import EventParser

NAME = "bedrock_converse"


def converse_usage(u: Any) -> Usage:
    return from_converse(u)


class ConverseStreamScanner:
    """Usage from the `metadata` event of the (decoded) Converse stream."""

    __slots__ = ("_events", "_parser", "usage")

    def __init__(self) -> None:
        self._parser = EventParser()
        self._events = 0
        self.usage = Usage()

    @property
    def events(self) -> int:
        return self._events

    def feed(self, chunk: bytes) -> bytes:
        for name, data in self._parser.feed(chunk):
            self._events += 1
            if name == "metadata" and isinstance(data, dict):
                self.usage = converse_usage(data.get("usage"))
        return chunk


class ConverseDialect:
    """Provider side only (a WireAPI, not a Dialect): clients never speak Converse to the gateway."""

    name = family = NAME

    def requested_model(self, path: str, body: dict[str, Any]) -> str | None:
        return None

    def wants_stream(self, path: str, body: dict[str, Any]) -> bool:
        return False

    def error_body(self, status: int, kind: str, message: str) -> bytes:
        return orjson.dumps({"message": message})

    def stream_error_event(self, kind: str, message: str) -> bytes:
        return b"event: error\ndata: " + orjson.dumps({"type": "error", "error": {"type": kind, "message": message}}) + b"\n\n"

    def usage_from_body(self, body: dict[str, Any]) -> Usage:
        return converse_usage(body.get("usage")) if isinstance(body.get("usage"), dict) else Usage()

    def stream_scanner(self, strip_usage: bool = False) -> ConverseStreamScanner:
        return ConverseStreamScanner()

    def max_output_tokens(self, body: dict[str, Any]) -> int | None:
        v = (body.get("inferenceConfig") or {}).get("maxTokens")
        return v if isinstance(v, int) else None


class _OpenAISession(OpenAIToAnthropicSession):
    """The OpenAI chat -> Anthropic session with Anthropic <-> Converse on the provider side."""

    __slots__ = ()

    def request(self, body: dict[str, Any]) -> dict[str, Any]:
        return anthropic_to_converse(super().request(body), self._p)

    def response(self, body: dict[str, Any]) -> dict[str, Any]:
        return super().response(converse_to_anthropic(body, self._p))

    def stream(self) -> EventTranslator:
        return ChainedEvents(ConverseToAnthropicStream(self._p), super().stream())


class AnthropicToConverse:
    client = "anthropic"
    client_operation = "messages"
    provider = NAME
    operation = "converse"

    def open(self, params: Params) -> Session:
        return StatelessSession(params, anthropic_to_converse, converse_to_anthropic, ConverseToAnthropicStream)


class OpenAIToConverse:
    client = "openai"
    client_operation = "chat"
    provider = NAME
    operation = "converse"

    def open(self, params: Params) -> Session:
        return _OpenAISession(params)
