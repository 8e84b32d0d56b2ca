"""A lean HTTP/1.1 client for provider calls: asyncio Protocol + httptools, keep-alive pool, TLS, timeouts.

Only what the proxy needs: POST with a bytes body, a response with status, headers, a whole-body
read and an incremental body iterator with backpressure. Every failure raises an `UpstreamError`.
"""

from dataplane.upstream_pool.client import Exchange, NativeClient
from dataplane.upstream_pool.connection import PoolKey
from dataplane.upstream_pool.errors import (
    UpstreamConnectError,
    UpstreamDisconnected,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimeout,
)
from dataplane.upstream_pool.pool import ConnectionPool
from dataplane.upstream_pool.response import NativeResponse

__all__ = [
    "ConnectionPool", "Exchange", "NativeClient", "NativeResponse", "PoolKey", "UpstreamConnectError", "UpstreamDisconnected",
    "UpstreamError", "UpstreamProtocolError", "UpstreamTimeout",
]
