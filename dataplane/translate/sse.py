"""Incremental SSE parsing of a provider stream, and SSE writing in each client dialect's framing."""

from __future__ import annotations

from collections.abc import Callable

import orjson

from .base import DONE, Event

_MAX_PENDING = 8 << 20  # one event larger than this is not a model stream event; drop it rather than grow forever


class EventParser:
    """Feed raw bytes in any split; get back each complete event as (event name, parsed data).

    `data: [DONE]` comes back as DONE; events whose data is not JSON are skipped (comments, keep-alives)."""

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, chunk: bytes) -> list[Event]:
        buf = self._pending + chunk if self._pending else chunk
        if b"\r" in buf:
            buf = buf.replace(b"\r\n", b"\n")  # Gemini frames events with CRLF
        cut = buf.rfind(b"\n\n")
        if cut < 0:
            self._pending = buf if len(buf) < _MAX_PENDING else b""
            return []
        self._pending = buf[cut + 2 :]
        out: list[Event] = []
        for raw in buf[:cut].split(b"\n\n"):
            ev = _event(raw)
            if ev is not None:
                out.append(ev)
        return out


def _event(raw: bytes) -> Event | None:
    name: str | None = None
    data: list[bytes] = []
    for line in raw.split(b"\n"):
        if line.startswith(b"data:"):
            data.append(line[5:].lstrip(b" "))
        elif line.startswith(b"event:"):
            name = line[6:].strip().decode("utf-8", "replace")
    if not data:
        return None
    payload = data[0] if len(data) == 1 else b"\n".join(data)
    if payload.strip() == b"[DONE]":
        return name, DONE
    try:
        return name, orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None


def write_openai(events: list[Event]) -> bytes:
    return b"".join(b"data: [DONE]\n\n" if d is DONE else b"data: " + orjson.dumps(d) + b"\n\n" for _, d in events)


def write_typed(events: list[Event]) -> bytes:
    """`event: <type>` + data framing (Anthropic messages, OpenAI Responses)."""
    return b"".join(b"event: %s\ndata: %s\n\n" % ((n or d.get("type", "")).encode(), orjson.dumps(d)) for n, d in events)


def write_gemini(events: list[Event]) -> bytes:
    return b"".join(b"data: " + orjson.dumps(d) + b"\r\n\r\n" for _, d in events if d is not DONE)


Writer = Callable[[list[Event]], bytes]


def default_writers() -> dict[str, Writer]:
    """Keyed by client API: the operation when it has its own framing, else the dialect family."""
    return {"openai": write_openai, "anthropic": write_typed, "responses": write_typed, "gemini": write_gemini}
