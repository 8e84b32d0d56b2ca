"""Translators by (client API family, client operation, provider API family). Adding a direction is one
module plus one line here; a direction through a pivot API is a `Chained` line."""

from __future__ import annotations

from collections.abc import Mapping

from dataplane.dialects.base import Dialect
from dataplane.dialects.registry import by_family

from .anthropic_to_openai import AnthropicToOpenAI
from .base import Translator
from .bedrock_converse import NAME as CONVERSE
from .bedrock_converse import AnthropicToConverse, ConverseDialect, OpenAIToConverse
from .binding import Translations
from .chain import Chained
from .chat_to_gemini import ChatToGemini
from .gemini_to_openai import GeminiToOpenAI
from .openai_to_anthropic import OpenAIToAnthropic
from .responses_to_chat import ResponsesToChat


def default_translators() -> dict[tuple[str, str, str], Translator]:
    ts: list[Translator] = [
        AnthropicToOpenAI(),
        OpenAIToAnthropic(),
        GeminiToOpenAI(),
        Chained(GeminiToOpenAI(), OpenAIToAnthropic()),  # through OpenAI chat: each rule is written once
        ResponsesToChat(),
        Chained(ResponsesToChat(), OpenAIToAnthropic()),
        AnthropicToConverse(),
        OpenAIToConverse(),
        Chained(GeminiToOpenAI(), OpenAIToConverse()),
        Chained(ResponsesToChat(), OpenAIToConverse()),
        ChatToGemini(),
        Chained(AnthropicToOpenAI(), ChatToGemini()),
        Chained(ResponsesToChat(), ChatToGemini()),
    ]
    return {(t.client, t.client_operation, t.provider): t for t in ts}


def default_translations(dialects: Mapping[str, Dialect]) -> Translations:
    # translators the dialects bring (new families) join the built-in ones, which win a collision
    brought = {(t.client, t.client_operation, t.provider): t for d in dialects.values() for t in d.translators()}
    # provider-only APIs (no client speaks them) join the client dialects' families here
    return Translations({**brought, **default_translators()}, {**by_family(dialects), CONVERSE: ConverseDialect()})
