"""Which requests the proxy translates, and what the registry refuses: keyed by client API family,
client operation and provider family, so Responses, embeddings and count_tokens are never mistaken
for chat turns."""

from __future__ import annotations

import pytest

from dataplane.dialects.registry import default_dialects
from dataplane.gateway_errors import GatewayError
from dataplane.providers.registry import default_providers
from dataplane.translate.registry import default_translations
from tests.translate_helpers import params

D = default_dialects()
P = default_providers()
T = default_translations(D)


@pytest.mark.parametrize(("dialect", "operation", "kind", "needed"), [
    ("openai", "chat", "openai_compatible", False),  # same API: pass-through
    ("anthropic", "messages", "anthropic", False),
    ("anthropic", "messages", "openai_compatible", True),  # another family
    ("openai", "chat", "anthropic", True),
    ("gemini", "generate", "openai", True),
    ("openai_responses", "responses", "openai", False),  # api.openai.com serves Responses itself
    ("openai_responses", "responses", "mistral", True),  # chat-only server: translated to chat
    ("openai", "embeddings", "mistral", False),  # served natively
])
def test_when_translation_applies(dialect: str, operation: str, kind: str, needed: bool) -> None:
    assert T.needed(D[dialect], operation, P[kind]) is needed


@pytest.mark.parametrize(("dialect", "operation", "kind"), [
    ("anthropic", "count_tokens", "openai_compatible"), ("openai", "embeddings", "anthropic"),
    ("gemini", "count_tokens", "anthropic"),
])
def test_apis_that_are_not_a_chat_turn_are_refused_with_a_400(dialect: str, operation: str, kind: str) -> None:
    with pytest.raises(GatewayError) as exc:
        T.bind(D[dialect], operation, P[kind], params())
    assert exc.value.status == 400 and repr(operation) in exc.value.message


def test_every_registered_pair_has_a_writer_and_both_dialects() -> None:
    for client, operation, provider in T.pairs():
        family = {"openai": "openai_responses" if operation == "responses" else "openai"}.get(client, client)
        kind = {"openai": "openai_compatible", "anthropic": "anthropic"}.get(provider)
        if kind is None:
            continue  # provider-only dialects (Bedrock Converse) are exercised by their own tests
        xl = T.bind(D[family], operation, P[kind], params())
        assert xl.operation in P[kind].paths
