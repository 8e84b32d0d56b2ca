"""Gemini client -> OpenAI chat provider (Gemini CLI, google-genai against an OpenAI-compatible model).
Gemini -> Anthropic is this composed with OpenAI chat -> Anthropic (registry.py)."""

from __future__ import annotations

from .base import Params, Session, StatelessSession
from .gemini_to_openai_request import translate_request
from .openai_to_gemini_response import OpenAIToGeminiStream, translate_response


class GeminiToOpenAI:
    client = "gemini"
    client_operation = "generate"
    provider = "openai"
    operation = "chat"

    def open(self, params: Params) -> Session:
        return StatelessSession(params, translate_request, translate_response, OpenAIToGeminiStream)
