"""Dialects by name. Adding a dialect is one module plus one line here."""

from __future__ import annotations

from .anthropic import AnthropicDialect
from .base import Dialect
from .openai import OpenAIDialect


def default_dialects() -> dict[str, Dialect]:
    return {"openai": OpenAIDialect(), "anthropic": AnthropicDialect()}
