"""OpenAI chat client -> Gemini provider (Cursor, Cline, the openai SDK against a Gemini model).
Anthropic and Responses clients reach Gemini by composition through chat (registry.py)."""

from __future__ import annotations

from typing import Any

from .base import EventTranslator, Params, Session, wants_stream_usage
from .chat_to_gemini_request import translate_request
from .gemini_to_chat_response import GeminiToChatStream, translate_response


class _Session:
    __slots__ = ("_include_usage", "_p")

    def __init__(self, p: Params) -> None:
        self._p = p
        self._include_usage = False

    def request(self, body: dict[str, Any]) -> dict[str, Any]:
        self._include_usage = wants_stream_usage(body)
        return translate_request(body, self._p)

    def response(self, body: dict[str, Any]) -> dict[str, Any]:
        return translate_response(body, self._p)

    def stream(self) -> EventTranslator:
        return GeminiToChatStream(self._p, self._include_usage)


class ChatToGemini:
    client = "openai"
    client_operation = "chat"
    provider = "gemini"
    operation = "generate"

    def open(self, params: Params) -> Session:
        return _Session(params)
