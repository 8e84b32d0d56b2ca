"""The one pooled HTTP client to providers. Client exceptions become GatewayErrors here, once.

Two implementations behind one facade: "native" (dataplane.upstream_pool: httptools on asyncio
Protocols, chosen by benchmark) and "aiohttp" (the previous client, kept for A/B and fallback).
Either way `post()` yields an object with `.status`, `.headers.get(lower_name)`, `await .read()`
and `async for chunk in .content.iter_any()`.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import TracebackType
from typing import Protocol

import aiohttp

from dataplane.dialects.base import ErrorKind
from dataplane.dialects.client_errors import GatewayError
from dataplane.upstream_pool import (
    ConnectionPool,
    Exchange,
    NativeClient,
    NativeResponse,
    PoolKey,
    UpstreamConnectError,
    UpstreamError,
)

# Upstream headers worth returning to the client (rate-limit hints, request ids for support tickets).
PASSTHROUGH_RESPONSE_HEADERS = (
    "retry-after", "x-request-id", "request-id", "anthropic-ratelimit-requests-remaining",
    "anthropic-ratelimit-tokens-remaining", "x-ratelimit-remaining-requests", "x-ratelimit-remaining-tokens",
)


IMPLEMENTATIONS = ("native", "aiohttp")


class _Body(Protocol):
    def iter_any(self) -> AsyncIterator[bytes]: ...


class UpstreamResponse(Protocol):
    """What proxy.py may use of a provider response, whichever client produced it."""

    @property
    def status(self) -> int: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def content(self) -> _Body: ...
    async def read(self) -> bytes: ...


def _translate(exc: BaseException, provider: str) -> GatewayError | None:
    if isinstance(exc, TimeoutError):
        return GatewayError(504, ErrorKind.TIMEOUT, f"provider {provider!r} did not answer in time")
    if isinstance(exc, (UpstreamConnectError, aiohttp.ClientConnectorError)):
        return GatewayError(502, ErrorKind.UPSTREAM, f"cannot connect to provider {provider!r}")
    if isinstance(exc, (UpstreamError, aiohttp.ClientError, asyncio.IncompleteReadError)):
        return GatewayError(502, ErrorKind.UPSTREAM, f"provider {provider!r} failed: {type(exc).__name__}")
    return None


class _NativePost(Exchange):
    __slots__ = ("_provider",)

    def __init__(self, pool: ConnectionPool, key: PoolKey, data: bytes, timeout_s: float, provider: str) -> None:
        super().__init__(pool, key, data, timeout_s)
        self._provider = provider

    async def __aenter__(self) -> NativeResponse:
        try:
            return await super().__aenter__()
        except (TimeoutError, UpstreamError) as exc:
            err = _translate(exc, self._provider)
            assert err is not None
            raise err from exc

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._release()
        if exc is not None and (err := _translate(exc, self._provider)) is not None:
            raise err from exc


class Upstream:
    def __init__(
        self, *, pool_size: int, connect_timeout_s: float, impl: str = "native", ssl_context: ssl.SSLContext | None = None
    ):
        if impl not in IMPLEMENTATIONS:
            raise ValueError(f"upstream client must be one of {IMPLEMENTATIONS}, not {impl!r}")
        self.impl = impl
        self._pool_size = pool_size
        self._connect_timeout_s = connect_timeout_s
        self._ssl_context = ssl_context
        self._session: aiohttp.ClientSession | None = None
        self._native: NativeClient | None = None
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}

    async def start(self) -> None:
        if self.impl == "native":
            self._native = NativeClient(
                pool_size=self._pool_size, connect_timeout_s=self._connect_timeout_s, idle_timeout_s=30.0,
                ssl_context=self._ssl_context,
            )
            return
        connector = aiohttp.TCPConnector(
            limit=self._pool_size, limit_per_host=0, ttl_dns_cache=300, enable_cleanup_closed=True, keepalive_timeout=30
        )
        # identity encoding: usage must be read from the body, and gzip on the hot path costs more than it saves
        self._session = aiohttp.ClientSession(
            connector=connector, auto_decompress=False, skip_auto_headers=("User-Agent",),
            headers={"accept-encoding": "identity"},
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._native is not None:
            await self._native.close()

    def _timeout(self, total_s: float) -> aiohttp.ClientTimeout:
        t = self._timeouts.get(total_s)
        if t is None:
            t = aiohttp.ClientTimeout(total=total_s, sock_connect=self._connect_timeout_s)
            self._timeouts[total_s] = t
        return t

    def post(
        self, url: str, headers: Iterable[tuple[str, str]], body: bytes, timeout_s: float, provider: str
    ) -> AbstractAsyncContextManager[UpstreamResponse]:
        native = self._native
        if native is None:
            return self._post_aiohttp(url, headers, body, timeout_s, provider)
        key, data = native.prepare(url, headers, body)
        return _NativePost(native.pool, key, data, timeout_s, provider)

    @asynccontextmanager
    async def _post_aiohttp(
        self, url: str, headers: Iterable[tuple[str, str]], body: bytes, timeout_s: float, provider: str
    ) -> AsyncIterator[UpstreamResponse]:
        assert self._session is not None, "Upstream.start() was not awaited"
        try:
            async with self._session.post(url, data=body, headers=list(headers), timeout=self._timeout(timeout_s)) as r:
                yield r
        except (TimeoutError, aiohttp.ClientError, asyncio.IncompleteReadError) as exc:
            err = _translate(exc, provider)
            if err is None:
                raise
            raise err from exc
