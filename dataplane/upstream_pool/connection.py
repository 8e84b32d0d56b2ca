"""One upstream HTTP/1.1 connection: an asyncio Protocol feeding httptools' response parser.

One exchange at a time. The body is buffered as decoded chunks (httptools removes chunked
framing); reading pauses when the buffer passes HIGH_WATER bytes and resumes when the consumer
takes it. Any error, timeout or early EOF marks the connection dead: it is never reused.
"""

from __future__ import annotations

import asyncio
from typing import cast

import httptools

from dataplane.upstream_pool.errors import UpstreamDisconnected, UpstreamError, UpstreamProtocolError, UpstreamTimeout

HIGH_WATER = 256 * 1024  # buffered body bytes before the socket stops being read
PoolKey = tuple[str, str, int]  # (scheme, host, port)


class Connection(asyncio.Protocol):
    __slots__ = (
        "_body_until_eof", "_buffered", "_chunks", "_exc", "_headers_seen", "_keep_alive", "_loop", "_parser",
        "_paused", "_timer", "_transport", "_waiter", "busy", "closed", "complete", "exchanges", "headers", "idle_since",
        "key", "status",
    )

    def __init__(self, key: PoolKey, loop: asyncio.AbstractEventLoop) -> None:
        self.key = key
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.closed = False
        self.busy = False
        self.idle_since = 0.0
        self.exchanges = 0  # requests sent on this connection; identifies the current exchange
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self._headers_seen = False
        self._body_until_eof = False
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._paused = False
        self.complete = False
        self._keep_alive = False
        self._exc: UpstreamError | None = None

    # --- exchange API (used by the client)
    def send(self, data: bytes, deadline: float) -> None:
        """Start an exchange: arm the total deadline and write the whole request in one write."""
        assert not self.busy and self._transport is not None
        self.busy = True
        self.exchanges += 1
        self._reset()
        self._timer = self._loop.call_at(deadline, self._on_timeout)
        self._transport.write(data)

    async def wait_head(self) -> None:
        while not self._headers_seen:
            if self._exc is not None:
                raise self._exc
            await self._wait()

    async def read_chunk(self) -> bytes | None:
        """The body bytes received so far (at least one), or None once the body is complete."""
        while True:
            chunks = self._chunks
            if chunks:
                data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                self._chunks = []
                self._buffered = 0
                if self._paused:
                    self._resume()
                return data
            if self.complete:
                return None
            if self._exc is not None:
                raise self._exc
            await self._wait()

    def finish(self) -> bool:
        """End the exchange; True if the connection can serve another request."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.busy = False
        reusable = self.complete and self._keep_alive and not self.closed
        self._chunks = []
        if self._paused:
            self._resume()
        if not reusable:
            self.close()
        return reusable

    def usable(self) -> bool:
        """Idle and still open (the peer has not closed it while it sat in the pool)."""
        t = self._transport
        return not self.closed and not self.busy and t is not None and not t.is_closing()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self._transport is not None:
                self._transport.close()

    # --- internals
    async def _wait(self) -> None:
        fut = self._loop.create_future()
        self._waiter = fut
        try:
            await fut
        finally:
            self._waiter = None

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _fail(self, exc: UpstreamError) -> None:
        if self._exc is None:
            self._exc = exc
        if self._transport is not None and not self.closed:
            self.closed = True
            self._transport.abort()
        self._wake()

    def _on_timeout(self) -> None:
        self._timer = None
        if not self.complete:
            self._fail(UpstreamTimeout("the upstream did not complete the response in time"))

    def _resume(self) -> None:
        self._paused = False
        if not self.closed and self._transport is not None:
            self._transport.resume_reading()

    # --- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.busy and not self.complete:
            if self._headers_seen and self._body_until_eof:
                self.complete = True  # a response delimited by EOF ends here (never reused)
            else:
                what = "reset" if exc is not None else "closed"
                stage = "the response body" if self._headers_seen else "the response headers"
                self._fail(UpstreamDisconnected(f"the upstream {what} the connection before the end of {stage}"))
        self._wake()

    def eof_received(self) -> bool | None:
        return None  # let the transport close; connection_lost decides whether that was premature

    def data_received(self, data: bytes) -> None:
        if not self.busy or self.complete:
            self.close()  # unsolicited bytes: the framing can no longer be trusted
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(UpstreamProtocolError("the upstream switched protocols"))
        except httptools.HttpParserError as exc:
            self._fail(UpstreamProtocolError(f"malformed HTTP response from the upstream: {exc}"))

    # --- httptools callbacks
    def on_message_begin(self) -> None:
        if self.complete:  # a second response to one request: the parser error closes the connection
            raise UpstreamProtocolError("unsolicited data after the response")

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        if key not in self.headers:  # first value wins, as with a multidict's get()
            self.headers[key] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 200:
            self.headers = {}  # an interim 1xx response: the real one follows
            return
        self.status = status
        self._headers_seen = True
        h = self.headers
        self._body_until_eof = (
            "content-length" not in h and "chunked" not in h.get("transfer-encoding", "") and status not in (204, 304)
        )
        self._wake()

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > HIGH_WATER and not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if not self._headers_seen:
            return  # end of a 1xx interim response
        self.complete = True
        self._keep_alive = self._parser.should_keep_alive()
        self._wake()
