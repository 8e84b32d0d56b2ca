"""asyncio Protocol + httptools parser: keep-alive, pipelining, size/count/time limits, write flow control.

Requests on one connection are handled strictly in order (HTTP/1.1
pipelining semantics); reading pauses while a request is in flight so a
client cannot make us buffer unbounded pipelined bodies.

Hostile clients (see interlock_contracts/http_limits.py): the request head is fed to the
parser only up to the header limit, so an endless header costs O(limit) memory
and time and is refused with 431 as soon as it passes the limit (httptools
concatenates header values, which is quadratic when unbounded). Deadlines are
checked by a ConnectionGuard sweep, not per-request timers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import cast

import httptools

from interlock_contracts.http_limits import HttpLimits

from .guard import ConnectionGuard
from .messages import ConnectionLike, Request, Responder, status_line

log = logging.getLogger(__name__)
Handler = Callable[[Request, Responder], Awaitable[None]]


# Renders a protocol-level refusal (malformed HTTP, body too large) as a JSON body in the dialect of `path`.
ErrorRenderer = Callable[[str, int, str], bytes]

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_LINGER_S = 2.0  # how long a refused client may keep sending before we close anyway


class _Stop(Exception):
    """Raised from a parser callback after a refusal, so httptools stops parsing the rest of the data."""


def _refusal(status: int, body: bytes, extra: bytes = b"") -> bytes:
    return status_line(status) + b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n%s\r\n%s" % (
        len(body), extra, body)


class HttpConnection(asyncio.Protocol, ConnectionLike):
    def __init__(
        self, handler: Handler, max_body: int, on_error: Callable[[Request, Responder, BaseException], None],
        render_error: ErrorRenderer, guard: ConnectionGuard | None = None,
    ):
        self._handler = handler
        self._render_error = render_error
        self._max_body = max_body
        self._on_error = on_error
        self._guard = guard or ConnectionGuard(HttpLimits())
        limits = self._guard.limits
        self._limits = limits
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url: list[bytes] = []
        self._url_len = 0
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._body_size = 0
        self._queue: deque[Request] = deque()
        self._task: asyncio.Task[None] | None = None
        self._drain: asyncio.Future[None] | None = None
        self._rejected = False
        self._pending_refusal: bytes | None = None  # written once the requests already queued are answered
        self._admitted = False
        self._linger_until = 0.0  # after a refusal: close at this time if the client has not closed
        self.closed = False
        # Head accounting: bytes the current request head may still use; -1 while its body is being read.
        self._head_room = limits.max_header_bytes
        # Deadlines (the guard's coarse monotonic clock): see check_deadline.
        self._in_message = False
        self._headers_done = False
        self._served = 0
        self._began = False
        self._opened = self._idle_since = self._msg_start = self._last_rx = self._guard.now

    # --- transport callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self._transport = cast(asyncio.Transport, transport)
        if not self._guard.admit(self):
            self._refuse_over_capacity()
            return
        self._admitted = True
        self._opened = self._idle_since = self._msg_start = self._last_rx = self._guard.now  # admit() refreshed it

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._guard.release(self)
        self._wake_drain()

    def eof_received(self) -> bool | None:
        if self._linger_until:
            return False  # a refused client finished sending: close now
        return None

    def data_received(self, data: bytes) -> None:
        if self._rejected:
            return
        self._last_rx = self._guard.now
        try:
            while True:
                room = self._head_room
                if room < 0 or len(data) <= room:
                    if room >= 0:
                        self._head_room = room - len(data)
                    self._parser.feed_data(data)
                    return
                # Only part of this data fits the head: parse that much, then see whether the head ended in it.
                self._head_room = 0
                self._parser.feed_data(data[:room])
                if self._rejected:
                    return
                if self._head_room == 0:  # still in the head, and it is full
                    self._reject(431, f"the request head exceeds the {self._limits.max_header_bytes} byte limit")
                    return
                data = data[room:]
        except httptools.HttpParserUpgrade:
            self._reject(400, "protocol upgrades are not supported")
        except httptools.HttpParserError as exc:
            if not self._rejected:
                self._reject(400, f"malformed HTTP request: {exc}")

    def pause_writing(self) -> None:
        if self._drain is None:
            self._drain = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        self._wake_drain()

    # --- ConnectionLike
    def write(self, data: bytes) -> None:
        if not self.closed and self._transport is not None:
            self._transport.write(data)

    async def drain(self) -> None:
        if self._drain is not None:
            await self._drain

    # --- parser callbacks
    def on_message_begin(self) -> None:
        self._url = []
        self._url_len = 0
        self._headers = {}
        self._body = []
        self._body_size = 0
        self._in_message = True
        self._headers_done = False
        # The first request's header clock started when the connection opened (no free extra period for slowloris).
        self._msg_start = self._guard.now if self._began else self._opened
        self._began = True

    def on_url(self, url: bytes) -> None:
        self._url.append(url)
        self._url_len += len(url)
        if self._url_len > self._limits.max_url_bytes:
            self._reject(414, f"the request URL exceeds the {self._limits.max_url_bytes} byte limit")
            raise _Stop

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self._head_room = -1
        self._headers_done = True
        # Counted once here, not per field: the head byte limit already bounds what repeated fields can cost.
        if len(self._headers) > self._limits.max_headers:
            self._reject(431, f"the request has more than {self._limits.max_headers} header fields")
            raise _Stop
        length = self._headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self._max_body:
            self._reject(413, f"request body exceeds the {self._max_body} byte limit")
            raise _Stop
        expect = self._headers.get("expect")
        if expect is not None:
            if expect.lower() != "100-continue":
                self._reject(417, f"unsupported expectation {expect[:64]!r}; only 100-continue is supported")
                raise _Stop
            if self._task is None and not self._queue:
                # Nothing is being answered on this connection, so the interim response cannot interleave with one.
                self.write(_CONTINUE)

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > self._max_body:
            self._reject(413, f"request body exceeds the {self._max_body} byte limit")
            raise _Stop
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._head_room = self._limits.max_header_bytes
        self._in_message = False
        if self._rejected:
            return
        url = (self._url[0] if len(self._url) == 1 else b"".join(self._url)).decode("latin-1")
        path, _, query = url.partition("?")
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        method = self._parser.get_method().decode()
        self._queue.append(Request(method, path, query, self._headers, body, self._parser.should_keep_alive()))
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._serve())
            if self._transport is not None:
                self._transport.pause_reading()

    # --- deadlines (called by the ConnectionGuard sweep)
    def check_deadline(self, now: float) -> None:
        if self._linger_until:
            if now >= self._linger_until:
                self._close()  # a refused client's grace period is over
            return
        if self._task is not None or self._rejected or self.closed:
            return  # a request is being answered: upstream and drain have their own bounds
        lim = self._limits
        if self._in_message:
            if self._headers_done:
                if now - self._last_rx > lim.body_timeout_s:
                    self._guard.timed_out_total += 1
                    self._reject(408, f"no request body data for {lim.body_timeout_s:g}s")
            elif now - self._msg_start > lim.header_timeout_s:
                self._guard.timed_out_total += 1
                self._reject(408, f"the request headers were not received within {lim.header_timeout_s:g}s")
        elif now - self._idle_since > (lim.keepalive_timeout_s if self._served else lim.header_timeout_s):
            self._close()  # idle between requests (or never sent one): close without a response

    # --- internals
    async def _serve(self) -> None:
        while self._queue and not self.closed:
            req = self._queue.popleft()
            resp = Responder(self, req.keep_alive)
            try:
                await self._handler(req, resp)
            except Exception as exc:  # the handler failed in a way it did not translate itself
                self._on_error(req, resp, exc)
                if resp.started:
                    self._close()
                    break
            self._served += 1
            if not req.keep_alive:
                self._close()
                break
        self._task = None
        # Reading was paused while requests were answered: a pipelined request's clocks restart now.
        self._idle_since = self._last_rx = self._msg_start = self._guard.now
        if self._pending_refusal is not None:
            # Bytes after the answered requests were refused: the earlier responses went first, now the refusal.
            self.write(self._pending_refusal)
            self._linger()
        elif not self.closed and self._transport is not None:
            self._transport.resume_reading()

    def _reject(self, status: int, message: str) -> None:
        self._rejected = True
        path = b"".join(self._url).decode("latin-1").partition("?")[0][:2048]
        refusal = _refusal(status, self._render_error(path, status, message))
        if self._task is not None:
            self._pending_refusal = refusal
            return
        self.write(refusal)
        self._linger()

    def _refuse_over_capacity(self) -> None:
        self._rejected = True
        body = self._render_error("", 503, "this gateway node is at its connection limit; retry shortly")
        self.write(_refusal(503, body, b"retry-after: 1\r\n"))
        self._linger()

    def _linger(self) -> None:
        """Close after a refusal without losing it: closing with the client's unread bytes in our buffer would send
        a reset that can destroy the response in flight, so half-close, discard what still arrives, and close when
        the client does or after a short grace (the guard's sweep)."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        self._linger_until = time.monotonic() + _LINGER_S
        transport.resume_reading()

    def _close(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()

    def _wake_drain(self) -> None:
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)
        self._drain = None


async def serve(
    handler: Handler, host: str, port: int, *, max_body: int,
    on_error: Callable[[Request, Responder, BaseException], None], render_error: ErrorRenderer,
    reuse_port: bool = False, limits: HttpLimits | None = None,
) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    guard = ConnectionGuard(limits or HttpLimits())
    server = await loop.create_server(
        lambda: HttpConnection(handler, max_body, on_error, render_error, guard), host, port, reuse_port=reuse_port,
        backlog=2048,
    )
    guard.start(server.is_serving)
    return server
