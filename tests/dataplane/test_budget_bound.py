"""The request sent upstream is bounded to the reserved output when the client set no limit (bound.py)."""

from __future__ import annotations

from dataplane.budget.bound import bound_output


def test_each_api_gets_its_own_output_limit_field() -> None:
    chat: dict = {"messages": []}
    assert bound_output("chat", chat, None, 64) and chat["max_completion_tokens"] == 64
    resp: dict = {"input": "x"}
    assert bound_output("responses", resp, None, 64) and resp["max_output_tokens"] == 64
    msgs: dict = {"messages": []}
    assert bound_output("messages", msgs, None, 64) and msgs["max_tokens"] == 64
    gem: dict = {"contents": [], "generationConfig": {"temperature": 0.2}}
    assert bound_output("generate", gem, None, 64)
    assert gem["generationConfig"] == {"temperature": 0.2, "maxOutputTokens": 64}
    bare: dict = {"contents": []}
    assert bound_output("generate", bare, None, 8) and bare["generationConfig"] == {"maxOutputTokens": 8}


def test_a_client_limit_or_an_unknown_operation_is_left_alone() -> None:
    chat = {"max_tokens": 10}
    assert not bound_output("chat", chat, 10, 64) and chat == {"max_tokens": 10}
    emb: dict = {"input": "x"}
    assert not bound_output("embeddings", emb, None, 64) and emb == {"input": "x"}
    assert not bound_output("chat", {}, None, 0)  # nothing reserved for output: nothing to bound
