"""The access log: one structured line per proxied request (JSON or logfmt), formatted and written off the
request path.

What it carries: ids (request/event, key, team, user, project, node), dialect, endpoint, requested and served
model, provider, route rule, attempts (deployment:status), status, error class, latency, TTFB, tokens, cost,
bytes and stream flags. Never content, tags, headers or secrets.

Cost on the request path: write() appends one tuple of the record's raw fields to a list. A short timer (or a
full batch) formats the batch (JSON through orjson; logfmt escapes repeated strings once, cached) and hands one bytes chunk to a writer thread, which does one write() per chunk, so a slow or stalled stdout
never blocks the event loop. Memory is bounded: at most `max_lines` unformatted lines and `max_bytes` of
formatted chunks wait; beyond that lines are dropped and counted (`dropped`, exported as
interlock_access_log_dropped_lines_total). close() formats and writes everything left (graceful stop).
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from collections import deque
from collections.abc import Callable
from typing import IO, Any, Protocol

import orjson

from dataplane.usage.event import RequestRecord

FORMATS = ("json", "logfmt")
FLUSH_S = 0.05  # short: a batch is formatted in one go on the loop, so keep it to a few hundred lines
FLUSH_LINES = 512
MAX_LINES = 65_536  # unformatted lines waiting for the next flush
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


Line = tuple[Any, ...]  # what capture() takes from a record: raw fields, formatted later


def capture(rec: RequestRecord) -> Line:
    """The raw fields of one line, in `line_fields()` order; cheap (no dict, no JSON).

    Only strings and numbers: a tuple of those is untracked by the cyclic GC, so lines waiting for the next
    flush add nothing to its collections (holding the key entry or attempt objects would)."""
    u = rec.usage
    key = rec.key
    attempts = rec.attempts
    if len(attempts) == 1:
        a = attempts[0]
        route_attempts = f"{a.deployment}:{a.status}"
    else:
        route_attempts = ",".join([f"{a.deployment}:{a.status}" for a in attempts])
    if key is None:
        kid = team = user = project = ""
    else:
        kid, team, user, project = key.id, key.team_id, key.user_id, key.project_id
    return (rec.received_s, rec.event_id, kid, team, user, project, rec.dialect, rec.endpoint, rec.requested_model,
            rec.model, rec.provider, rec.route_rule, rec.status, rec.error_class, rec.done_s, rec.first_byte_s,
            len(attempts), route_attempts, rec.stream, u.input_tokens, u.output_tokens, rec.cost_pico,
            rec.request_bytes, rec.response_bytes, rec.client_disconnected, rec.policy_version)


def line_fields(t: Line, node_id: str) -> dict[str, Any]:
    """The line's fields, in order. Times in ms with µs resolution, cost in USD."""
    (received, rid, kid, team, user, project, dialect, endpoint, requested, model, provider, route, status, error,
     done, fb, attempts, route_attempts, stream, tok_in, tok_out, cost, b_in, b_out, disconnected, version) = t
    return {
        "ts": received, "msg": "access", "request_id": rid, "node": node_id,
        "key_id": kid, "team": team, "user": user, "project": project,
        "dialect": dialect, "endpoint": endpoint, "requested_model": requested[:200], "model": model,
        "provider": provider, "route": route, "status": status, "error": error,
        "latency_ms": int((done - received) * 1e6) / 1000 if done else 0,
        "ttfb_ms": int((fb - received) * 1e6) / 1000 if fb else 0, "attempts": attempts,
        "route_attempts": route_attempts, "stream": stream, "input_tokens": tok_in,
        "output_tokens": tok_out, "cost_usd": cost / 1e12, "bytes_in": b_in, "bytes_out": b_out,
        "client_disconnected": disconnected, "policy_version": version,
    }


def fields(rec: RequestRecord, node_id: str) -> dict[str, Any]:
    return line_fields(capture(rec), node_id)


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

    The fields a kind of request repeats (node, key ids, dialect, endpoint, models, route, status, error) sit in a
    cached dict per shape; a line copies it and sets the fields that vary (a copy is cheaper than building all
    27 entries, and keeps the order)."""

    def __init__(self, node_id: str) -> None:
        self._node = node_id
        self._shapes: dict[tuple[Any, ...], dict[str, Any]] = {}

    def _line(self, t: Line) -> dict[str, Any]:
        (received, rid, kid, team, user, project, dialect, endpoint, requested, model, provider, route, status, error,
         done, fb, attempts, route_attempts, stream, tok_in, tok_out, cost, b_in, b_out, disconnected, version) = t
        sk = (kid, team, user, project, dialect, endpoint, requested, model, provider, route, status, error)
        base = self._shapes.get(sk)
        if base is None:
            if len(self._shapes) >= _CACHE_LIMIT:
                self._shapes.clear()
            base = self._shapes[sk] = line_fields(t, self._node)
            return base  # computed from this line: complete
        d = base.copy()
        d["ts"] = received
        d["request_id"] = rid
        d["latency_ms"] = int((done - received) * 1e6) / 1000 if done else 0
        d["ttfb_ms"] = int((fb - received) * 1e6) / 1000 if fb else 0
        d["attempts"] = attempts
        d["route_attempts"] = route_attempts
        d["stream"] = stream
        d["input_tokens"] = tok_in
        d["output_tokens"] = tok_out
        d["cost_usd"] = cost / 1e12
        d["bytes_in"] = b_in
        d["bytes_out"] = b_out
        d["client_disconnected"] = disconnected
        d["policy_version"] = version
        return d

    def __call__(self, batch: list[Line]) -> bytes:
        dumps, line = orjson.dumps, self._line
        try:
            # `+ b"\n"` rather than OPT_APPEND_NEWLINE: orjson's keyword-argument path costs more than the concat
            return b"".join([dumps(line(t)) + b"\n" for t in batch])
        except orjson.JSONEncodeError:  # a lone surrogate somewhere: line by line, those through the stdlib
            return b"".join([_json_line(line_fields(t, self._node)) for t in batch])


class LogfmtFormatter:
    def __init__(self, node_id: str) -> None:
        self._node = node_id
        self._esc = _Escaped(_logfmt_str)

    def __call__(self, batch: list[Line]) -> bytes:
        e, out = self._esc, []
        for t in batch:
            out.append(" ".join([f"{k}={_logfmt_plain(v, e)}" for k, v in line_fields(t, self._node).items()]) + "\n")
        return "".join(out).encode()


def _logfmt_plain(v: Any, e: Callable[[str], str]) -> str:
    t = type(v)
    if t is str:
        return v if v.isalnum() else e(v)  # letters and digits never need quoting
    if t is bool:
        return _B[v]
    return repr(v)


FORMATTERS: dict[str, Callable[[str], Callable[[list[Line]], bytes]]] = {"json": JsonFormatter,
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
    def __init__(self, fmt: str, node_id: str, stream: Stream | None = None, *, flush_s: float | None = None,
                 flush_lines: int = FLUSH_LINES, max_lines: int = MAX_LINES, max_bytes: int = MAX_BYTES) -> None:
        if fmt not in FORMATTERS:
            raise ValueError(f"access log format must be one of {', '.join(FORMATS)}, not {fmt!r}")
        self._format = FORMATTERS[fmt](node_id)
        self._writer = _Writer(stream if stream is not None else _stdout(), max_bytes)
        self._flush_s = FLUSH_S if flush_s is None else flush_s
        self._flush_lines = flush_lines
        self._max_lines = max_lines
        self._buf: list[Line] = []
        self._timer: asyncio.TimerHandle | None = None
        self._dropped = 0  # lines refused: buffer full (the writer is stalled) or logged after close
        self._closed = False

    def write(self, rec: RequestRecord) -> None:
        """On the request path: one tuple appended; formatting and I/O happen later, in batches."""
        buf = self._buf
        if len(buf) >= self._max_lines or self._closed:
            self._dropped += 1
            return
        buf.append(capture(rec))
        if self._timer is None:
            try:
                self._timer = asyncio.get_running_loop().call_later(self._flush_s, self.flush)
            except RuntimeError:  # no loop (a synchronous caller): write now
                self.flush()
        elif len(buf) >= self._flush_lines:
            self.flush()

    def flush(self) -> None:
        """Format what is buffered and hand it to the writer thread (not waiting for the write)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._buf:
            return
        batch, self._buf = self._buf, []
        if not self._writer.put(self._format(batch), len(batch)):
            self._dropped += len(batch)

    @property
    def dropped(self) -> int:
        """Lines that never reached the stream: refused (buffers full, after close) or in a failed write."""
        return self._dropped + self._writer.lost_lines

    @property
    def pending_lines(self) -> int:
        return len(self._buf)

    @property
    def queued_bytes(self) -> int:
        return self._writer.queued_bytes

    def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Graceful stop: everything logged so far is written (a stdout stalled past timeout_s loses the rest)."""
        self.flush()
        self._closed = True
        self._writer.close(timeout_s)
