"""Which requests the proxy translates, and what the registry refuses: keyed by client API family,
client operation and provider family, so Responses, embeddings and count_tokens are never mistaken
for chat turns."""

from __future__ import annotations

import pytest

from dataplane.dialects.client_errors import GatewayError
from dataplane.dialects.registry import default_dialects
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


@pytest.mark.parametrize(("dialect", "operation", "kind"), [("openai", "embeddings", "anthropic")])
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


def converse_sse(events: list[tuple[str, dict[str, object]]]) -> bytes:
    import orjson
    return b"".join(b"event: %s\ndata: %s\n\n" % (n.encode(), orjson.dumps(d)) for n, d in events)


@pytest.mark.parametrize(("dialect", "operation", "body"), [
    ("gemini", "generate", {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}),
    ("openai_responses", "responses", {"input": "hi", "stream": True}),
])
def test_gemini_and_responses_clients_reach_bedrock_converse_through_the_chat_pivot(
        dialect: str, operation: str, body: dict[str, object]) -> None:
    from dataplane.dialects.base import Usage
    from tests.translate_helpers import parse
    xl = T.bind(D[dialect], operation, P["bedrock"], params(stream=True))
    sent = xl.request(body)
    assert xl.operation == "converse" and sent["messages"] == [{"role": "user", "content": [{"text": "hi"}]}]
    scanner = xl.scanner()
    out = scanner.feed(converse_sse([
        ("messageStart", {"role": "assistant"}),
        ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "hello"}}),
        ("contentBlockStop", {"contentBlockIndex": 0}),
        ("messageStop", {"stopReason": "end_turn"}),
        ("metadata", {"usage": {"inputTokens": 5, "outputTokens": 2, "totalTokens": 7}}),
    ]))
    events = [d for _, d in parse(out)]
    text = "".join(p.get("text", "") for e in events for c in e.get("candidates", []) for p in c["content"]["parts"]) \
        if dialect == "gemini" else "".join(e.get("delta", "") for e in events if e.get("type") == "response.output_text.delta")
    assert text == "hello"
    assert scanner.usage == Usage(input_tokens=5, output_tokens=2, reported=True)
