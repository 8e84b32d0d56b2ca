"""Anthropic's own API."""

from __future__ import annotations

from .base import ProviderAdapter


def adapters() -> list[ProviderAdapter]:
    return [
        ProviderAdapter(
            kind="anthropic", dialect="anthropic",
            paths={"messages": "/v1/messages", "count_tokens": "/v1/messages/count_tokens", "models": "/v1/models"},
            auth_header="x-api-key",
            forward_headers=frozenset({"anthropic-version", "anthropic-beta"}),
            static_headers=(("anthropic-version", "2023-06-01"),),
        ),
    ]
