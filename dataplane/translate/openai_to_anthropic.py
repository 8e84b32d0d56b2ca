"""OpenAI chat client -> Anthropic provider (Cursor, Cline, the openai SDK against a Claude model)."""

from __future__ import annotations

from typing import Any

from .anthropic_to_openai_response import AnthropicToOpenAIStream, translate_response
from .base import EventTranslator, Params, Session, wants_stream_usage
from .openai_to_anthropic_request import translate_request


class OpenAIToAnthropicSession:
    __slots__ = ("_include_usage", "_json_tool", "_p")

    def __init__(self, p: Params) -> None:
        self._p = p
        self._json_tool: str | None = None
        self._include_usage = False

    def request(self, body: dict[str, Any]) -> dict[str, Any]:
        out, self._json_tool = translate_request(body, self._p)
        self._include_usage = wants_stream_usage(body)
        return out

    def response(self, body: dict[str, Any]) -> dict[str, Any]:
        return translate_response(body, self._p, self._json_tool)

    def stream(self) -> EventTranslator:
        return AnthropicToOpenAIStream(self._p, self._include_usage, self._json_tool)


class OpenAIToAnthropic:
    client = "openai"
    client_operation = "chat"
    provider = "anthropic"
    operation = "messages"

    def open(self, params: Params) -> Session:
        return OpenAIToAnthropicSession(params)
