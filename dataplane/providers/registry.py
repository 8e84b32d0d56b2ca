"""Provider kinds. An OpenAI-compatible provider is a few lines of configuration here."""

from __future__ import annotations

from .base import ProviderAdapter

_OPENAI_PATHS = {"chat": "/chat/completions", "models": "/models"}


def default_providers() -> dict[str, ProviderAdapter]:
    adapters = [
        ProviderAdapter(
            kind="openai", dialect="openai", paths=_OPENAI_PATHS,
            auth_header="authorization", auth_prefix="Bearer ",
            forward_headers=frozenset({"openai-organization", "openai-project"}),
            needs_usage_option=True,
        ),
        ProviderAdapter(
            kind="openai_compatible", dialect="openai", paths=_OPENAI_PATHS,
            auth_header="authorization", auth_prefix="Bearer ", credential_required=False,
            needs_usage_option=True,
        ),
        ProviderAdapter(
            kind="anthropic", dialect="anthropic", paths={"messages": "/v1/messages"},
            auth_header="x-api-key",
            forward_headers=frozenset({"anthropic-version", "anthropic-beta"}),
            static_headers=(("anthropic-version", "2023-06-01"),),
        ),
    ]
    return {a.kind: a for a in adapters}
