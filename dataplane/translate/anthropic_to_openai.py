"""Anthropic client -> OpenAI chat provider (e.g. Claude Code against an OpenAI-compatible model)."""

from __future__ import annotations

from .anthropic_to_openai_request import translate_request
from .base import Params, Session, StatelessSession
from .openai_to_anthropic_response import OpenAIToAnthropicStream, translate_response


class AnthropicToOpenAI:
    client = "anthropic"
    client_operation = "messages"
    provider = "openai"
    operation = "chat"

    def open(self, params: Params) -> Session:
        return StatelessSession(params, translate_request, translate_response, OpenAIToAnthropicStream)
