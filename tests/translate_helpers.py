"""Helpers for the translation unit tests: SSE transcripts, byte splitting, official-SDK validation."""

from __future__ import annotations

from typing import Any

import orjson
import pydantic
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message, RawMessageStreamEvent
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from dataplane.dialects.registry import default_dialects
from dataplane.providers.base import ProviderAdapter
from dataplane.providers.registry import default_providers
from dataplane.translate.base import Params
from dataplane.translate.binding import Translation
from dataplane.translate.registry import default_translations
from dataplane.translate.sse import EventParser

_ANTHROPIC_EVENT = pydantic.TypeAdapter(RawMessageStreamEvent)


def params(model: str = "client-model", *, stream: bool = False, kind: str = "openai_compatible",
           max_output: int = 0) -> Params:
    return Params(client_model=model, stream=stream, created=1_700_000_000, provider_kind=kind,
                  max_output_tokens=max_output)


OPERATION = {"anthropic": "messages", "openai": "chat", "gemini": "generate"}


def adapter(provider: str, p: Params) -> ProviderAdapter:
    """The provider kind's adapter: the params' kind for OpenAI-speaking providers, else the dialect's own."""
    return default_providers()[p.provider_kind if provider == "openai" else provider]


def bind(client: str, provider: str, p: Params) -> Translation:
    dialects = default_dialects()
    return default_translations(dialects).bind(dialects[client], OPERATION[client], adapter(provider, p), p)


def openai_chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    """One chat.completion.chunk as OpenAI streams it (`delta=None`: no choices, e.g. the final usage chunk)."""
    choices = [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
    return {"id": "chatcmpl-S", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
            "system_fingerprint": "fp", "choices": choices, "usage": None, **extra}


def openai_sse(chunks: list[dict[str, Any]], done: bool = True) -> bytes:
    return b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks) + (b"data: [DONE]\n\n" if done else b"")


def anthropic_sse(events: list[dict[str, Any]]) -> bytes:
    return b"".join(b"event: %s\ndata: %s\n\n" % (e["type"].encode(), orjson.dumps(e)) for e in events)


def relay(xl: Translation, upstream: bytes, step: int) -> tuple[bytes, Any]:
    """Feed the upstream bytes in `step`-byte pieces through the translating scanner, as the relay does."""
    scanner = xl.scanner()
    out = b"".join(scanner.feed(upstream[i : i + step]) for i in range(0, len(upstream), step))
    return out, scanner.usage


def parse(out: bytes) -> list[tuple[str | None, Any]]:
    return EventParser().feed(out)


def anthropic_final(out: bytes) -> Message:
    """Validate every event against the SDK's types and accumulate them as the SDK's MessageStream does."""
    snapshot = None
    bufs: dict[int, bytes] = {}
    for name, data in parse(out):
        event = _ANTHROPIC_EVENT.validate_python(data)
        assert name == data["type"]
        snapshot = accumulate_event(event=event, current_snapshot=snapshot, json_bufs=bufs)
    assert snapshot is not None
    return Message.model_validate(snapshot.model_dump())


def openai_final(out: bytes) -> tuple[ChatCompletion, list[ChatCompletionChunk]]:
    state: ChatCompletionStreamState = ChatCompletionStreamState()
    chunks = []
    events = parse(out)
    assert events[-1][1] == "[DONE]"
    for _, data in events[:-1]:
        chunk = ChatCompletionChunk.model_validate(data)
        chunks.append(chunk)
        state.handle_chunk(chunk)
    return state.get_final_completion(), chunks  # type: ignore[return-value]


def gemini_chunks(out: bytes) -> list[Any]:
    """Validate every Gemini stream chunk with the google-genai SDK's response type."""
    from google.genai import types

    assert b"\r\n\r\n" in out or not out  # Google frames SSE events with CRLF
    return [types.GenerateContentResponse.model_validate(d) for _, d in parse(out)]
