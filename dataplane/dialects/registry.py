"""Dialects by name. Adding a dialect is one module plus one line here."""

from __future__ import annotations

from .anthropic import AnthropicDialect
from .base import Dialect
from .gemini import GeminiDialect
from .openai import OpenAIDialect
from .openai_responses import OpenAIResponsesDialect


def default_dialects() -> dict[str, Dialect]:
    """Keyed by endpoint API; `.name` is the family a provider must speak (both OpenAI APIs are "openai")."""
    return {"openai": OpenAIDialect(), "openai_responses": OpenAIResponsesDialect(), "anthropic": AnthropicDialect(),
            "gemini": GeminiDialect()}
