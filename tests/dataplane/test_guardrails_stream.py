"""Streamed output redacted while it streams: a secret split across two SSE events at every offset, with the
byte stream itself cut at every offset, in every client dialect's stream format."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from dataplane.dialects.client_errors import GatewayError
from dataplane.dialects.registry import default_dialects
from dataplane.guardrails.compiled import compile_guardrail
from dataplane.http.messages import Request
from dataplane.pipeline.context import RequestContext
from dataplane.pipeline.endpoint import Endpoint
from dataplane.pipeline.guardrail_stage import Guardrails
from dataplane.pipeline.output_guard import OutputGuard
from dataplane.usage.event import EventIds, RequestRecord
from interlock_contracts.v1 import policy_pb2

SECRET = "AKIAQ7ZL3XK5PW2MN4RT"
BEFORE, AFTER = "the key is ", " and that is all."


def _ev(name: str | None, obj: Any, crlf: bool = False) -> bytes:
    nl = b"\r\n" if crlf else b"\n"
    head = f"event: {name}".encode() + nl if name else b""
    return head + b"data: " + orjson.dumps(obj) + nl + nl


def openai_chat(parts: list[str]) -> tuple[bytes, Any]:
    evs = [_ev(None, {"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})]
    evs += [_ev(None, {"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": p}}]}) for p in parts]
    evs += [_ev(None, {"id": "c", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 5}}), b"data: [DONE]\n\n"]
    return b"".join(evs), lambda o: "".join(c["delta"].get("content", "") for c in o.get("choices", []))


def anthropic(parts: list[str]) -> tuple[bytes, Any]:
    evs = [_ev("message_start", {"type": "message_start", "message": {"id": "m", "role": "assistant", "content": []}}),
           _ev("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})]
    evs += [_ev("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}})
            for p in parts]
    evs += [_ev("content_block_stop", {"type": "content_block_stop", "index": 0}),
            _ev("message_stop", {"type": "message_stop"})]
    return b"".join(evs), lambda o: o.get("delta", {}).get("text", "") if o.get("type") == "content_block_delta" else ""


def anthropic_tool_args(parts: list[str]) -> tuple[bytes, Any]:
    evs = [_ev("content_block_start", {"type": "content_block_start", "index": 0,
                                       "content_block": {"type": "tool_use", "id": "t", "name": "Bash", "input": {}}})]
    evs += [_ev("content_block_delta", {"type": "content_block_delta", "index": 0,
                                        "delta": {"type": "input_json_delta", "partial_json": p}}) for p in parts]
    evs += [_ev("message_stop", {"type": "message_stop"})]
    return b"".join(evs), lambda o: o.get("delta", {}).get("partial_json", "") if o.get("type") == "content_block_delta" else ""


def responses(parts: list[str]) -> tuple[bytes, Any]:
    evs = [_ev("response.created", {"type": "response.created", "response": {"id": "r", "status": "in_progress"}})]
    evs += [_ev("response.output_text.delta", {"type": "response.output_text.delta", "output_index": 0, "delta": p})
            for p in parts]
    evs += [_ev("response.completed", {"type": "response.completed", "response": {"id": "r", "status": "completed"}})]
    return b"".join(evs), lambda o: o.get("delta", "") if o.get("type") == "response.output_text.delta" else ""


def gemini(parts: list[str]) -> tuple[bytes, Any]:
    evs = [_ev(None, {"candidates": [{"content": {"parts": [{"text": p}], "role": "model"}, "index": 0}],
                      "modelVersion": "gemini-2.0-flash", "responseId": "abc"}, crlf=True) for p in parts]
    evs += [_ev(None, {"candidates": [{"content": {"parts": [{"text": ""}], "role": "model"}, "finishReason": "STOP"}],
                       "usageMetadata": {"promptTokenCount": 3}}, crlf=True)]
    return b"".join(evs), lambda o: "".join(p.get("text", "") for c in o.get("candidates", [])
                                            for p in c.get("content", {}).get("parts", []))


FORMATS = {"openai": openai_chat, "anthropic": anthropic, "anthropic-tool-args": anthropic_tool_args,
           "openai_responses": responses, "gemini": gemini}


def guard(action: str = "redact") -> tuple[OutputGuard, RequestContext]:
    g = compile_guardrail(policy_pb2.Guardrail(id="out", detectors=["secrets"], action=action, direction="output"))
    dialect = default_dialects()["openai"]
    ctx = RequestContext(Request("POST", "/", "", {}, b"", True), None, Endpoint(dialect, "chat", "/"),  # type: ignore[arg-type]
                         RequestRecord(EventIds(), "openai", "/", 0))
    return OutputGuard(Guardrails(), [g]), ctx


def run(stream: bytes, cuts: list[int], action: str = "redact") -> tuple[bytes, RequestContext]:
    og, ctx = guard(action)
    out, prev = [], 0
    for c in [*cuts, len(stream)]:
        out.append(og.chunk(ctx, stream[prev:c]))
        prev = c
    out.append(og.flush(ctx))
    return b"".join(out), ctx


def texts(out: bytes, text_of: Any) -> str:
    got = []
    for block in out.replace(b"\r\n", b"\n").split(b"\n\n"):
        for line in block.split(b"\n"):
            if line.startswith(b"data:") and line[5:].strip() != b"[DONE]":
                got.append(text_of(orjson.loads(line[5:])))
    return "".join(got)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_secret_split_at_every_offset_and_every_byte_cut(fmt: str) -> None:
    full = BEFORE + SECRET + AFTER
    for k in range(len(BEFORE) + 1, len(BEFORE) + len(SECRET)):  # the secret split between two events
        stream, text_of = FORMATS[fmt]([full[:k], full[k:]])
        original_events = stream.replace(b"\r\n", b"\n").count(b"\n\n")
        step = 1 if k == len(BEFORE) + 7 else 17  # every byte cut for one split, a stride for the others
        for cut in range(1, len(stream), step):
            out, ctx = run(stream, [cut])
            assert SECRET.encode() not in out, (fmt, k, cut)
            assert texts(out, text_of) == BEFORE + "[REDACTED:aws-access-key-id]" + AFTER, (fmt, k, cut)
            assert out.replace(b"\r\n", b"\n").count(b"\n\n") == original_events  # no event lost or merged
        assert [e["rules"] for e in ctx.rec.guardrails] == [{"aws-access-key-id": 1}]


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_secret_one_character_per_event(fmt: str) -> None:
    full = BEFORE + SECRET + AFTER
    stream, text_of = FORMATS[fmt]([*full])
    out, _ = run(stream, list(range(7, len(stream), 7)))
    assert texts(out, text_of) == BEFORE + "[REDACTED:aws-access-key-id]" + AFTER


def test_events_without_text_are_not_held_back() -> None:
    """The first bytes (message_start, role chunk) go out as soon as they arrive: no added time to first byte."""
    stream, _ = anthropic(["hello world, how are you today my friend"])
    og, ctx = guard()
    first_event = stream.index(b"\n\n") + 2
    assert og.chunk(ctx, stream[:first_event]) == stream[:first_event]


def test_clean_text_is_released_while_streaming_not_at_the_end() -> None:
    words = [f"word{i} " for i in range(50)]
    stream, text_of = anthropic(words)
    og, ctx = guard()
    released = og.chunk(ctx, stream)
    assert len(texts(released, text_of)) >= len("".join(words)) - 30  # all but the last few tokens
    assert texts(released + og.flush(ctx), text_of) == "".join(words)


def test_pem_key_split_across_many_events() -> None:
    pem = ("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n"
           "Qk2Lp8Zr5Tn1Wm7Yc4Hb6Jd0Fs3Ag9Ke2Mo5Pu8RiX1v9Qk2Lp8Zr5Tn1Wm7Yc4\n-----END PRIVATE KEY-----")
    parts = [pem[i:i + 5] for i in range(0, len(pem), 5)]
    stream, text_of = openai_chat(["here: ", *parts, " end"])
    out, _ = run(stream, [])
    assert b"MIIEvQIBADANBgkq" not in out
    assert texts(out, text_of) == "here: [REDACTED:private-key] end"


def test_block_raises_before_the_secret_is_written() -> None:
    stream, _ = openai_chat(["the key is AKIAQ7ZL", "3XK5PW2MN4RT and more words here"])
    og, ctx = guard("block")
    with pytest.raises(GatewayError) as e:
        og.chunk(ctx, stream)
        og.flush(ctx)
    assert "out" in e.value.message and SECRET not in e.value.message
