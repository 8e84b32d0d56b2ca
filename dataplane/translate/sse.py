"""Incremental SSE parsing of a provider stream. Writing in a client's framing is its dialect's
(Dialect.write_events, dataplane/dialects/sse.py)."""

from __future__ import annotations

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
