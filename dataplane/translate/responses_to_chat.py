"""OpenAI Responses client -> OpenAI chat provider (Codex CLI on a model served only through chat
completions). Responses -> Anthropic is this composed with OpenAI chat -> Anthropic (registry.py)."""

from __future__ import annotations

from typing import Any

from .base import EventTranslator, Params, Session
from .chat_to_responses_response import ChatToResponsesStream, translate_response
from .responses_to_chat_request import translate_request


class _Session:
    __slots__ = ("_custom", "_p")

    def __init__(self, p: Params) -> None:
        self._p = p
        self._custom: frozenset[str] = frozenset()

    def request(self, body: dict[str, Any]) -> dict[str, Any]:
        out, self._custom = translate_request(body, self._p)
        return out

    def response(self, body: dict[str, Any]) -> dict[str, Any]:
        return translate_response(body, self._p, self._custom)

    def stream(self) -> EventTranslator:
        return ChatToResponsesStream(self._p, self._custom)


class ResponsesToChat:
    client = "openai"
    client_operation = "responses"
    provider = "openai"
    operation = "chat"

    def open(self, params: Params) -> Session:
        return _Session(params)
