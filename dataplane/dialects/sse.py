"""Incremental SSE framing shared by the dialect stream scanners, and the SSE writers dialects frame events with.

Only complete events (terminated by a blank line) are looked at, and only the
ones that mention usage are parsed: the hot path scans bytes in C (`find`,
`count`, regex) rather than decoding every event.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import orjson

from .base import DONE, Event, Usage

_USAGE_OBJ = re.compile(rb'"usage"\s*:\s*\{')
_MAX_PENDING = 1 << 20  # a single SSE event larger than 1 MiB is not usage-bearing; stop buffering it


class SSEBuffer:
    __slots__ = ("_pending", "events")

    def __init__(self) -> None:
        self._pending = b""
        self.events = 0

    def complete(self, chunk: bytes) -> bytes:
        """Return the complete events in pending+chunk; keep the unterminated tail. An event that outgrows
        _MAX_PENDING is returned as it arrives instead (callers forward what this returns, so dropping it would
        truncate the client's stream); it cannot carry usage, and scanning skips unterminated bytes."""
        buf = self._pending + chunk if self._pending else chunk
        cut = buf.rfind(b"\n\n")
        if cut < 0:
            if len(buf) < _MAX_PENDING:
                self._pending = buf
                return b""
            self._pending = b""
            return buf
        self._pending = buf[cut + 2 :]
        done = buf[: cut + 2]
        self.events += done.count(b"data:")
        return done


class SSEScanner:
    """What every dialect's stream scanner keeps: the SSE framing, the usage so far and the event count.
    Subclasses implement `feed`."""

    __slots__ = ("_sse", "usage")

    def __init__(self) -> None:
        self._sse = SSEBuffer()
        self.usage = Usage()

    @property
    def events(self) -> int:
        return self._sse.events


def usage_events(done: bytes, marker: re.Pattern[bytes] = _USAGE_OBJ) -> Iterator[tuple[int, int, dict]]:
    """Yield (start, end, data) for each complete event in `done` that carries a usage object
    (`marker` finds it: "usage" by default, Gemini's "usageMetadata").

    One regex pass over the bytes; only matching events are sliced and decoded.
    """
    next_from = 0
    for m in marker.finditer(done):
        if m.start() < next_from:
            continue  # a second match inside an event already handled
        before = done.rfind(b"\n\n", 0, m.start())
        start = 0 if before < 0 else before + 2
        end = done.find(b"\n\n", m.end()) + 2
        if end < 2:
            break  # inside the unterminated part of an oversized event (SSEBuffer.complete)
        next_from = end
        for line in done[start:end].split(b"\n"):
            if line.startswith(b"data:"):
                try:
                    payload = orjson.loads(line[5:])
                except orjson.JSONDecodeError:
                    continue
                if isinstance(payload, dict):
                    yield start, end, payload
                break


def cut(done: bytes, spans: list[tuple[int, int]]) -> bytes:
    """`done` without the given (start, end) spans, which are in order and disjoint."""
    parts, last = [], 0
    for start, end in spans:
        parts.append(done[last:start])
        last = end
    parts.append(done[last:])
    return b"".join(parts)


def write_data(events: list[Event]) -> bytes:
    """`data:` framing, `data: [DONE]` last (OpenAI chat completions)."""
    return b"".join(b"data: [DONE]\n\n" if d is DONE else b"data: " + orjson.dumps(d) + b"\n\n" for _, d in events)


def write_typed(events: list[Event]) -> bytes:
    """`event: <type>` + data framing (Anthropic messages, OpenAI Responses)."""
    return b"".join(b"event: %s\ndata: %s\n\n" % ((n or d.get("type", "")).encode(), orjson.dumps(d)) for n, d in events)


def write_crlf(events: list[Event]) -> bytes:
    """CRLF-framed `data:` events, no end marker (Gemini)."""
    return b"".join(b"data: " + orjson.dumps(d) + b"\r\n\r\n" for _, d in events if d is not DONE)
