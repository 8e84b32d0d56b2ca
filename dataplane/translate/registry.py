"""Translators by (client API family, client operation, provider API family). Adding a direction is one
module plus one line here; a direction through a pivot API is a `Chained` line."""

from __future__ import annotations

from collections.abc import Mapping

from dataplane.dialects.base import Dialect

from .anthropic_openai import AnthropicToOpenAI
from .base import Translator
from .bedrock_converse import NAME as CONVERSE
from .bedrock_converse import AnthropicToConverse, ConverseDialect, OpenAIToConverse
from .binding import Translations
from .chain import Chained
from .chat_gemini import ChatToGemini
from .gemini_openai import GeminiToOpenAI
from .openai_anthropic import OpenAIToAnthropic
from .responses_chat import ResponsesToChat
from .sse import default_writers


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
    # provider-only dialects (no client speaks them) join the client dialects here
    return Translations(default_translators(), {**dialects, CONVERSE: ConverseDialect()}, default_writers())
