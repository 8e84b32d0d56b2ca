"""Request and response objects for the hot-path server."""

from __future__ import annotations

from collections.abc import Iterable
from http import HTTPStatus

_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}
_REASONS[529] = b"Overloaded"


class Request:
    __slots__ = ("body", "headers", "keep_alive", "method", "path", "query")

    def __init__(self, method: str, path: str, query: str, headers: dict[str, str], body: bytes, keep_alive: bool):
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers  # lower-case names
        self.body = body
        self.keep_alive = keep_alive


def status_line(status: int) -> bytes:
    return b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Unknown"))


def header_block(headers: Iterable[tuple[str, str]]) -> bytes:
    return b"".join(b"%s: %s\r\n" % (k.encode("latin-1"), v.encode("latin-1")) for k, v in headers)


class Responder:
    """Writes one response to the connection: either `send` once, or `start_stream`/`write`/`end_stream`."""

    __slots__ = ("_conn", "_keep_alive", "bytes_sent", "started")

    def __init__(self, conn: ConnectionLike, keep_alive: bool):
        self._conn = conn
        self._keep_alive = keep_alive
        self.started = False
        self.bytes_sent = 0

    @property
    def disconnected(self) -> bool:
        return self._conn.closed

    def send(self, status: int, content_type: str, body: bytes, headers: Iterable[tuple[str, str]] = ()) -> None:
        self.started = True
        self.bytes_sent += len(body)
        conn_hdr = b"" if self._keep_alive else b"connection: close\r\n"
        self._conn.write(
            b"".join((
                status_line(status),
                b"content-type: ", content_type.encode(), b"\r\ncontent-length: %d\r\n" % len(body),
                conn_hdr, header_block(headers), b"\r\n", body,
            ))
        )

    def start_stream(self, status: int, content_type: str, headers: Iterable[tuple[str, str]] = ()) -> None:
        self.started = True
        conn_hdr = b"" if self._keep_alive else b"connection: close\r\n"
        self._conn.write(
            b"".join((
                status_line(status), b"content-type: ", content_type.encode(),
                b"\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n", conn_hdr, header_block(headers), b"\r\n",
            ))
        )

    async def write(self, chunk: bytes) -> None:
        if chunk and not self._conn.closed:
            self.bytes_sent += len(chunk)
            self._conn.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            await self._conn.drain()

    def end_stream(self) -> None:
        if not self._conn.closed:
            self._conn.write(b"0\r\n\r\n")


class ConnectionLike:
    closed: bool

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    async def drain(self) -> None:
        raise NotImplementedError


