"""POST over pooled connections: `async with client.post(...) as resp` (a class-based context manager).

The request is one write: the request line and Host (cached per URL), the caller's headers,
content-length, then the body. Leaving the context returns the connection to the pool only if
the response was read to its end and the server allows keep-alive; otherwise (an error, a
cancelled or half-read exchange) the connection is closed.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterable
from types import TracebackType
from urllib.parse import urlsplit

from dataplane.upstream_pool.connection import Connection, PoolKey
from dataplane.upstream_pool.pool import ConnectionPool
from dataplane.upstream_pool.response import NativeResponse

_DEFAULT_PORTS = {"http": 80, "https": 443}
_OWN_HEADERS = frozenset({"content-length", "transfer-encoding", "connection", "host"})
_MAX_CACHED_TARGETS = 1024


class _Target:
    __slots__ = ("host_line", "key", "request_line")

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS or not parts.hostname:
            raise ValueError("the upstream URL must be absolute http:// or https://")
        port = parts.port or _DEFAULT_PORTS[scheme]
        self.key: PoolKey = (scheme, parts.hostname, port)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.request_line = f"POST {path} HTTP/1.1\r\n".encode("ascii")
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        default = port == _DEFAULT_PORTS[scheme]
        self.host_line = f"host: {host}\r\n" if default else f"host: {host}:{port}\r\n"


class NativeClient:
    def __init__(
        self, *, pool_size: int, connect_timeout_s: float, idle_timeout_s: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.pool = ConnectionPool(
            max_size=pool_size, connect_timeout_s=connect_timeout_s, idle_timeout_s=idle_timeout_s,
            ssl_context=ssl_context,
        )
        self._targets: dict[str, _Target] = {}

    def post(self, url: str, headers: Iterable[tuple[str, str]], body: bytes, timeout_s: float) -> Exchange:
        key, data = self.prepare(url, headers, body)
        return Exchange(self.pool, key, data, timeout_s)

    def prepare(self, url: str, headers: Iterable[tuple[str, str]], body: bytes) -> tuple[PoolKey, bytes]:
        """The pool key and the request bytes (head + body) for one POST."""
        target = self._targets.get(url)
        if target is None:
            target = _Target(url)
            if len(self._targets) >= _MAX_CACHED_TARGETS:
                self._targets.clear()
            self._targets[url] = target
        return target.key, _serialize(target, headers, body)

    async def close(self) -> None:
        await self.pool.close()


def _serialize(target: _Target, headers: Iterable[tuple[str, str]], body: bytes) -> bytes:
    lines: list[str] = []
    host = target.host_line
    encoding = True
    for name, value in headers:
        low = name.lower()
        if low in _OWN_HEADERS:
            if low == "host":
                host = ""
            else:
                continue
        elif low == "accept-encoding":
            encoding = False
        if "\n" in value or "\r" in value or "\n" in name or "\r" in name or ":" in name:
            raise ValueError(f"header {name!r} holds a line break or a bad name")  # never echo the value
        lines.append(f"{name}: {value}\r\n")
    if encoding:
        lines.append("accept-encoding: identity\r\n")  # usage is read from the body: no gzip
    lines.append(f"{host}content-length: {len(body)}\r\n\r\n")
    return b"".join((target.request_line, "".join(lines).encode("utf-8"), body))


class Exchange:
    """One request/response; usable once, as an async context manager."""

    __slots__ = ("_conn", "_data", "_key", "_pool", "_timeout_s")

    def __init__(self, pool: ConnectionPool, key: PoolKey, data: bytes, timeout_s: float) -> None:
        self._pool = pool
        self._key = key
        self._data = data
        self._timeout_s = timeout_s
        self._conn: Connection | None = None

    async def __aenter__(self) -> NativeResponse:
        deadline = asyncio.get_running_loop().time() + self._timeout_s
        conn = await self._pool.acquire(self._key, deadline)
        self._conn = conn
        try:
            conn.send(self._data, deadline)
            self._data = b""
            await conn.wait_head()
        except BaseException:
            self._release()
            raise
        return NativeResponse(conn)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._release()

    def _release(self) -> None:
        conn = self._conn
        if conn is not None:
            self._conn = None
            self._pool.release(conn, conn.finish())

