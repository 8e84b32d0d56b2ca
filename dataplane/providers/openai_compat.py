"""OpenAI-style chat servers: OpenAI itself, Mistral, and anything OpenAI-compatible (vLLM, Ollama,
llama.cpp, Groq, Together, ...). Configuration entries only; they differ in auth and in whether a
stream reports usage unasked."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from .base import ProviderAdapter, ProviderConfigError

OPENAI_PATHS = {"chat": "/chat/completions", "responses": "/responses", "embeddings": "/embeddings", "models": "/models"}

# include: send stream_options.include_usage (OpenAI, vLLM, Ollama >= 0.5, Groq, Together, llama.cpp accept it);
# omit: the server rejects unknown fields or always reports usage on its own.
_USAGE_OPTION = {"include": True, "omit": False}


@dataclass(frozen=True, slots=True)
class OpenAICompatible(ProviderAdapter):
    """`options.stream_usage: include|omit` picks whether streams ask for usage (default include)."""

    def bind(self, options: Mapping[str, str], secret: str | None) -> ProviderAdapter:
        ProviderAdapter.bind(self, options, secret)
        choice = options.get("stream_usage", "include")
        if choice not in _USAGE_OPTION:
            raise ProviderConfigError(f"stream_usage must be one of {sorted(_USAGE_OPTION)}, not {choice!r}")
        return replace(self, needs_usage_option=_USAGE_OPTION[choice])


def adapters() -> list[ProviderAdapter]:
    return [
        ProviderAdapter(  # OpenAI itself counts input tokens; compatible servers do not (counted by the gateway)
            kind="openai", dialect="openai", paths={**OPENAI_PATHS, "count_tokens": "/responses/input_tokens"},
            auth_header="authorization", auth_prefix="Bearer ",
            forward_headers=frozenset({"openai-organization", "openai-project"}),
            needs_usage_option=True,
        ),
        OpenAICompatible(
            kind="openai_compatible", dialect="openai", paths=OPENAI_PATHS,
            auth_header="authorization", auth_prefix="Bearer ", credential_required=False,
            needs_usage_option=True, options=frozenset({"stream_usage"}),
        ),
        # Mistral's API rejects unknown fields (stream_options included) and ends every stream with usage.
        ProviderAdapter(
            kind="mistral", dialect="openai",
            paths={"chat": "/chat/completions", "embeddings": "/embeddings", "models": "/models"},
            auth_header="authorization", auth_prefix="Bearer ",
        ),
    ]
