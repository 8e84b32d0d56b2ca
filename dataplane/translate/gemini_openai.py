"""Gemini client -> OpenAI chat provider (Gemini CLI, google-genai against an OpenAI-compatible model).
Gemini -> Anthropic is this composed with OpenAI chat -> Anthropic (registry.py)."""

from __future__ import annotations

from typing import Any

from .base import EventTranslator, Params, Session
from .gemini_openai_request import translate_request
from .gemini_openai_response import OpenAIToGeminiStream, translate_response


class _Session:
    __slots__ = ("_p",)

    def __init__(self, p: Params) -> None:
        self._p = p

    def request(self, body: dict[str, Any]) -> dict[str, Any]:
        return translate_request(body, self._p)

    def response(self, body: dict[str, Any]) -> dict[str, Any]:
        return translate_response(body, self._p)

    def stream(self) -> EventTranslator:
        return OpenAIToGeminiStream(self._p)


class GeminiToOpenAI:
    client = "gemini"
    client_operation = "generate"
    provider = "openai"
    operation = "chat"

    def open(self, params: Params) -> Session:
        return _Session(params)
