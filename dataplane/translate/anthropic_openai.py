"""Anthropic client -> OpenAI chat provider (e.g. Claude Code against an OpenAI-compatible model)."""

from __future__ import annotations

from typing import Any

from .anthropic_openai_request import translate_request
from .anthropic_openai_response import OpenAIToAnthropicStream, translate_response
from .base import EventTranslator, Params, Session


class _Session:
    __slots__ = ("_p",)

    def __init__(self, p: Params) -> None:
        self._p = p

    def request(self, body: dict[str, Any]) -> dict[str, Any]:
        return translate_request(body, self._p)

    def response(self, body: dict[str, Any]) -> dict[str, Any]:
        return translate_response(body, self._p)

    def stream(self) -> EventTranslator:
        return OpenAIToAnthropicStream(self._p)


class AnthropicToOpenAI:
    client = "anthropic"
    client_operation = "messages"
    provider = "openai"
    operation = "chat"

    def open(self, params: Params) -> Session:
        return _Session(params)
