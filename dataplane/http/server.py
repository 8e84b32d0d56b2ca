"""asyncio Protocol + httptools parser: keep-alive, pipelining, body limits, write flow control.

Requests on one connection are handled strictly in order (HTTP/1.1
pipelining semantics); reading pauses while a request is in flight so a
client cannot make us buffer unbounded pipelined bodies.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import cast

import httptools

from .messages import ConnectionLike, Request, Responder, status_line

log = logging.getLogger(__name__)
Handler = Callable[[Request, Responder], Awaitable[None]]


# Renders a protocol-level refusal (malformed HTTP, body too large) as a JSON body in the dialect of `path`.
ErrorRenderer = Callable[[str, int, str], bytes]


def _refusal(status: int, body: bytes) -> bytes:
    return status_line(status) + b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body)


class HttpConnection(asyncio.Protocol, ConnectionLike):
    def __init__(
        self, handler: Handler, max_body: int, on_error: Callable[[Request, Responder, BaseException], None],
        render_error: ErrorRenderer,
    ):
        self._handler = handler
        self._render_error = render_error
        self._max_body = max_body
        self._on_error = on_error
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._body_size = 0
        self._queue: deque[Request] = deque()
        self._task: asyncio.Task[None] | None = None
        self._drain: asyncio.Future[None] | None = None
        self._rejected = False
        self.closed = False

    # --- transport callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._wake_drain()

    def data_received(self, data: bytes) -> None:
        if self._rejected:
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._reject(400, "protocol upgrades are not supported")
        except httptools.HttpParserError as exc:
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
        self._url = b""
        self._headers = {}
        self._body = []
        self._body_size = 0

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        length = self._headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self._max_body:
            self._reject(413, f"request body exceeds the {self._max_body} byte limit")

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > self._max_body:
            self._reject(413, f"request body exceeds the {self._max_body} byte limit")
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._rejected:
            return
        url = self._url.decode("latin-1")
        path, _, query = url.partition("?")
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        method = self._parser.get_method().decode()
        self._queue.append(Request(method, path, query, self._headers, body, self._parser.should_keep_alive()))
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._serve())
            if self._transport is not None:
                self._transport.pause_reading()

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
            if not req.keep_alive:
                self._close()
                break
        self._task = None
        if not self.closed and self._transport is not None:
            self._transport.resume_reading()

    def _reject(self, status: int, message: str) -> None:
        self._rejected = True
        path = self._url.decode("latin-1").partition("?")[0]
        self.write(_refusal(status, self._render_error(path, status, message)))
        self._close()

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
    reuse_port: bool = False,
) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: HttpConnection(handler, max_body, on_error, render_error), host, port, reuse_port=reuse_port, backlog=2048
    )
