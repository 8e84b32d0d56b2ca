"""The response handed to the caller: the subset of aiohttp.ClientResponse the proxy uses."""

from __future__ import annotations

from collections.abc import AsyncIterator

from dataplane.upstream_pool.connection import Connection
from dataplane.upstream_pool.errors import UpstreamDisconnected


class NativeResponse:
    """Valid only inside the `async with` that produced it; the connection goes back to the pool after."""

    __slots__ = ("_conn", "_exchange", "headers", "status")

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._exchange = conn.exchanges
        self.status: int = conn.status
        self.headers: dict[str, str] = conn.headers  # lower-case names; .get(name, default)

    @property
    def content(self) -> NativeResponse:
        return self  # `resp.content.iter_any()`, as with aiohttp

    def _live(self) -> Connection:
        conn = self._conn
        if not conn.busy or conn.exchanges != self._exchange:
            raise UpstreamDisconnected("the response was used after its exchange ended")
        return conn

    async def read(self) -> bytes:
        conn = self._live()
        parts: list[bytes] = []
        while (chunk := await conn.read_chunk()) is not None:
            parts.append(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def iter_any(self) -> AsyncIterator[bytes]:
        conn = self._live()
        while (chunk := await conn.read_chunk()) is not None:
            yield chunk
