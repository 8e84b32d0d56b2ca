"""Incremental SSE framing shared by the dialect stream scanners.

Only complete events (terminated by a blank line) are looked at, and only the
ones that mention usage are parsed: the hot path scans bytes in C (`find`,
`count`, regex) rather than decoding every event.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import orjson

_USAGE_OBJ = re.compile(rb'"usage"\s*:\s*\{')
_MAX_PENDING = 1 << 20  # a single SSE event larger than 1 MiB is not usage-bearing; stop buffering it


class SSEBuffer:
    __slots__ = ("_pending", "events")

    def __init__(self) -> None:
        self._pending = b""
        self.events = 0

    def complete(self, chunk: bytes) -> bytes:
        """Return the complete events in pending+chunk; keep the unterminated tail."""
        buf = self._pending + chunk if self._pending else chunk
        cut = buf.rfind(b"\n\n")
        if cut < 0:
            self._pending = buf if len(buf) < _MAX_PENDING else b""
            return b""
        self._pending = buf[cut + 2 :]
        done = buf[: cut + 2]
        self.events += done.count(b"data:")
        return done


def has_usage(data: bytes) -> bool:
    return _USAGE_OBJ.search(data) is not None


def without_events(done: bytes, drop: Callable[[bytes], bool]) -> bytes:
    """`done` minus the complete events for which `drop(event)` is true."""
    return b"".join(e + b"\n\n" for e in done.split(b"\n\n")[:-1] if not drop(e))


def usage_payloads(done: bytes) -> Iterator[dict]:
    """Yield the decoded JSON data of each event in `done` that carries a usage object."""
    if _USAGE_OBJ.search(done) is None:
        return
    for event in done.split(b"\n\n"):
        if _USAGE_OBJ.search(event) is None:
            continue
        for line in event.split(b"\n"):
            if line.startswith(b"data:"):
                try:
                    payload = orjson.loads(line[5:])
                except orjson.JSONDecodeError:
                    continue
                if isinstance(payload, dict):
                    yield payload
