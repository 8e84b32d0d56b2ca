"""The access log: one structured line per proxied request (JSON or logfmt), formatted and written off the
request path.

What it carries: ids (request/event, key, team, user, project, node), dialect, endpoint, requested and served
model, provider, route rule, attempts (deployment:status), status, error class, latency, TTFB, tokens, cost,
bytes and stream flags. Never content, tags, headers or secrets.

Cost on the request path: none here. The node's RequestObserver (dataplane/observe/node.py) batches finished
records; write_batch() formats a batch (JSON through orjson; logfmt escapes repeated strings once, cached)
and hands one bytes chunk to a writer thread, which does one write() per chunk, so a slow or stalled stdout
never blocks the event loop. Memory is bounded: at most `max_bytes` of formatted chunks wait; beyond that
lines are dropped and counted (`dropped`, exported as interlock_access_log_dropped_lines_total). close()
writes everything queued (graceful stop).
"""

from __future__ import annotations

import json
import sys
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import IO, Any, Protocol

import orjson

from dataplane.usage.event import RequestRecord

FORMATS = ("json", "logfmt")
MAX_BYTES = 16 << 20  # formatted chunks waiting for the writer thread (a stalled stdout)
CLOSE_TIMEOUT_S = 5.0
_CACHE_LIMIT = 8192  # distinct strings whose escaped form is kept (models, routes, deployments, ...)


class Stream(Protocol):
    """Where lines go: stdout's binary buffer by default."""

    def write(self, data: bytes, /) -> int | None: ...

    def flush(self) -> None: ...


def _stdout() -> IO[bytes]:
    out = getattr(sys.stdout, "buffer", None)
    return out if out is not None else sys.__stdout__.buffer  # type: ignore[union-attr,return-value]


def _ms(t: float, received: float) -> float:
    return int((t - received) * 1e6) / 1000 if t else 0  # ms with µs resolution; 0 = never happened


def varying_fields(rec: RequestRecord) -> dict[str, Any]:
    """The part of a line that varies from request to request, in order. Cost in USD."""
    received, attempts, u = rec.received_s, rec.attempts, rec.usage
    if len(attempts) == 1:
        a = attempts[0]
        route_attempts = f"{a.deployment}:{a.status}"
    else:
        route_attempts = ",".join([f"{a.deployment}:{a.status}" for a in attempts])
    return {
        "ts": received, "msg": "access", "request_id": rec.event_id, "status": rec.status, "error": rec.error_class,
        "latency_ms": _ms(rec.done_s, received), "ttfb_ms": _ms(rec.first_byte_s, received),
        "attempts": len(attempts), "route_attempts": route_attempts, "stream": rec.stream,
        "input_tokens": u.input_tokens, "output_tokens": u.output_tokens, "cost_usd": rec.cost_pico / 1e12,
        "bytes_in": rec.request_bytes, "bytes_out": rec.response_bytes,
        "client_disconnected": rec.client_disconnected, "policy_version": rec.policy_version,
    }


Shape = tuple[str, ...]  # who and what was called: the part of a line that repeats across requests


def shape_of(rec: RequestRecord) -> Shape:
    key = rec.key
    kid, team, user, project = ("", "", "", "") if key is None else (key.id, key.team_id, key.user_id,
                                                                      key.project_id)
    return (kid, team, user, project, rec.dialect, rec.endpoint, rec.requested_model, rec.model, rec.provider,
            rec.route_rule)


def shape_fields(shape: Shape, node_id: str) -> dict[str, Any]:
    kid, team, user, project, dialect, endpoint, requested, model, provider, route = shape
    return {"node": node_id, "key_id": kid, "team": team, "user": user, "project": project, "dialect": dialect,
            "endpoint": endpoint, "requested_model": requested[:200], "model": model, "provider": provider,
            "route": route}


def fields(rec: RequestRecord, node_id: str) -> dict[str, Any]:
    """A line's fields, in order: what varies first, then who and what was called."""
    return {**varying_fields(rec), **shape_fields(shape_of(rec), node_id)}


def _json_line(d: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(d) + b"\n"
    except orjson.JSONEncodeError:  # a lone surrogate (not UTF-8): the stdlib escapes it instead of failing
        return (json.dumps(d, separators=(",", ":")) + "\n").encode()


_CONTROL = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _logfmt_str(s: str) -> str:
    """Bare when it is one printable word; quoted otherwise, with control characters (and anything not
    printable, such as a lone surrogate) escaped, so a value never splits or breaks its line."""
    if s and s.isprintable() and not any(c in s for c in ' "=\\'):
        return s
    q = s.replace("\\", "\\\\").replace('"', '\\"')
    if not q.isprintable():
        q = "".join([c if c.isprintable() else _CONTROL.get(c) or f"\\u{ord(c):04x}" for c in q])
    return '"' + q + '"'


class _Escaped:
    """Escaped form of strings that repeat from line to line, computed once; cleared when it grows past a
    limit (client-chosen model names are open-ended)."""

    __slots__ = ("_escape", "cache")

    def __init__(self, escape: Callable[[str], str]) -> None:
        self._escape = escape
        self.cache: dict[str, str] = {}

    def __call__(self, s: str) -> str:
        v = self.cache.get(s)
        if v is None:
            if len(self.cache) >= _CACHE_LIMIT:
                self.cache.clear()
            v = self.cache[s] = self._escape(s)
        return v


_B = {True: "true", False: "false"}


class JsonFormatter:
    """JSON lines via orjson (measured faster than any Python-level templating of the same line).

    A line is the fields that vary (a 17-entry dict through orjson) followed by the fields a kind of request
    repeats (node, key ids, dialect, endpoint, models, provider, route), kept as encoded bytes per shape: about
    half the cost of encoding all 28 fields each time."""

    def __init__(self, node_id: str) -> None:
        self._node = node_id
        self._shapes: dict[Shape, bytes] = {}

    def _tail(self, shape: Shape) -> bytes:
        tail = b"," + _json_line(shape_fields(shape, self._node))[1:]  # `,"node":...}\n`
        if len(self._shapes) >= _CACHE_LIMIT:
            self._shapes.clear()
        self._shapes[shape] = tail
        return tail

    def __call__(self, batch: Sequence[RequestRecord]) -> bytes:
        dumps, shapes, out = orjson.dumps, self._shapes, []
        try:
            for rec in batch:
                shape = shape_of(rec)
                out.append(dumps(varying_fields(rec))[:-1] + (shapes.get(shape) or self._tail(shape)))
            return b"".join(out)
        except orjson.JSONEncodeError:  # a lone surrogate somewhere: line by line, those through the stdlib
            return b"".join([_json_line(fields(r, self._node)) for r in batch])


class LogfmtFormatter:
    def __init__(self, node_id: str) -> None:
        self._node = node_id
        self._esc = _Escaped(_logfmt_str)

    def __call__(self, batch: Sequence[RequestRecord]) -> bytes:
        e, out = self._esc, []
        for rec in batch:
            out.append(" ".join([f"{k}={_logfmt_plain(v, e)}" for k, v in fields(rec, self._node).items()]) + "\n")
        return "".join(out).encode()


def _logfmt_plain(v: Any, e: Callable[[str], str]) -> str:
    t = type(v)
    if t is str:
        return v if v.isalnum() else e(v)  # letters and digits never need quoting
    if t is bool:
        return _B[v]
    return repr(v)


FORMATTERS: dict[str, Callable[[str], Callable[[Sequence[RequestRecord]], bytes]]] = {"json": JsonFormatter,
                                                                          "logfmt": LogfmtFormatter}


class _Writer:
    """A thread that writes formatted chunks to the stream, so a blocked stdout blocks only it.

    Chunks wait in a deque bounded by bytes; a chunk that does not fit is dropped (and counted by the caller).
    """

    def __init__(self, stream: Stream, max_bytes: int) -> None:
        self._stream = stream
        self._max = max_bytes
        self._chunks: deque[tuple[bytes, int]] = deque()
        self._queued = 0
        self._cv = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None
        self.lost_lines = 0  # in chunks whose write failed (a closed or broken stdout)

    @property
    def queued_bytes(self) -> int:
        return self._queued

    def put(self, data: bytes, lines: int) -> bool:
        with self._cv:
            if self._closing or self._queued + len(data) > self._max:
                return False
            self._chunks.append((data, lines))
            self._queued += len(data)
            if self._thread is None:  # started by the first chunk: nothing runs for a node that logs nothing
                self._thread = threading.Thread(target=self._run, name="access-log-writer", daemon=True)
                self._thread.start()
            self._cv.notify()
        return True

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._chunks and not self._closing:
                    self._cv.wait()
                if not self._chunks:
                    return
                data, lines = self._chunks.popleft()
            try:
                self._stream.write(data)
                self._stream.flush()
            except Exception:  # a closed or broken stdout must not stop the writer (or take the node down)
                self.lost_lines += lines
            with self._cv:
                self._queued -= len(data)

    def close(self, timeout_s: float) -> int:
        """Write what is queued (up to timeout_s), then stop. Returns the bytes left unwritten."""
        with self._cv:
            self._closing = True
            self._cv.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout_s)
        return self._queued


class AccessLog:
    def __init__(self, fmt: str, node_id: str, stream: Stream | None = None, *, max_bytes: int = MAX_BYTES) -> None:
        if fmt not in FORMATTERS:
            raise ValueError(f"access log format must be one of {', '.join(FORMATS)}, not {fmt!r}")
        self._format = FORMATTERS[fmt](node_id)
        self._writer = _Writer(stream if stream is not None else _stdout(), max_bytes)
        self._dropped = 0  # lines refused: the writer is stalled (its queue is full) or logged after close
        self._closed = False

    def write_batch(self, recs: Sequence[RequestRecord]) -> None:
        """Format finished requests' lines and hand them to the writer thread (not waiting for the write)."""
        if not recs:
            return
        if self._closed or not self._writer.put(self._format(recs), len(recs)):
            self._dropped += len(recs)

    def write(self, rec: RequestRecord) -> None:
        self.write_batch((rec,))

    @property
    def dropped(self) -> int:
        """Lines that never reached the stream: refused (writer queue full, after close) or in a failed write."""
        return self._dropped + self._writer.lost_lines

    @property
    def queued_bytes(self) -> int:
        return self._writer.queued_bytes

    def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Graceful stop: everything handed over so far is written (a stdout stalled past timeout_s loses the rest)."""
        self._closed = True
        self._writer.close(timeout_s)
