"""The one pooled HTTP client to providers. aiohttp/asyncio exceptions become GatewayErrors here, once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

import aiohttp

from dataplane.dialects.base import ErrorKind
from dataplane.gateway_errors import GatewayError

# Upstream headers worth returning to the client (rate-limit hints, request ids for support tickets).
PASSTHROUGH_RESPONSE_HEADERS = (
    "retry-after", "x-request-id", "request-id", "anthropic-ratelimit-requests-remaining",
    "anthropic-ratelimit-tokens-remaining", "x-ratelimit-remaining-requests", "x-ratelimit-remaining-tokens",
)


class Upstream:
    def __init__(self, *, pool_size: int, connect_timeout_s: float):
        self._pool_size = pool_size
        self._connect_timeout_s = connect_timeout_s
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}

    async def start(self) -> None:
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

    def _timeout(self, total_s: float) -> aiohttp.ClientTimeout:
        t = self._timeouts.get(total_s)
        if t is None:
            t = aiohttp.ClientTimeout(total=total_s, sock_connect=self._connect_timeout_s)
            self._timeouts[total_s] = t
        return t

    @asynccontextmanager
    async def post(
        self, url: str, headers: Iterable[tuple[str, str]], body: bytes, timeout_s: float, provider: str
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        assert self._session is not None, "Upstream.start() was not awaited"
        try:
            async with self._session.post(url, data=body, headers=list(headers), timeout=self._timeout(timeout_s)) as r:
                yield r
        except TimeoutError as exc:
            raise GatewayError(504, ErrorKind.TIMEOUT, f"provider {provider!r} did not answer in time") from exc
        except aiohttp.ClientConnectorError as exc:
            raise GatewayError(502, ErrorKind.UPSTREAM, f"cannot connect to provider {provider!r}") from exc
        except (aiohttp.ClientError, asyncio.IncompleteReadError) as exc:
            raise GatewayError(502, ErrorKind.UPSTREAM, f"provider {provider!r} failed: {type(exc).__name__}") from exc
