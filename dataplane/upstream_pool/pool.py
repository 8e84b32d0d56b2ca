"""Keep-alive connections per (scheme, host, port), at most `max_size` in use at once.

`max_size` bounds connections lent out (as aiohttp's connector `limit` does); callers beyond it
wait in FIFO order until one is released or their deadline passes. Idle connections are reused
newest first; ones idle longer than `idle_timeout_s`, or closed by the peer while idle, are
dropped (checked on acquire and by a periodic sweep).
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque

from dataplane.upstream_pool.connection import Connection, PoolKey
from dataplane.upstream_pool.errors import UpstreamConnectError, UpstreamTimeout


class ConnectionPool:
    def __init__(
        self, *, max_size: int, connect_timeout_s: float, idle_timeout_s: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self._max = max_size
        self._connect_timeout_s = connect_timeout_s
        self._idle_timeout_s = idle_timeout_s
        self._ssl_context = ssl_context
        self._idle: dict[PoolKey, deque[Connection]] = {}
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._in_use = 0
        self._sweep_handle: asyncio.TimerHandle | None = None
        self._closed = False
        self.opened = 0  # connections ever opened (tests and diagnostics)

    @property
    def in_use(self) -> int:
        return self._in_use

    def idle_count(self) -> int:
        return sum(len(q) for q in self._idle.values())

    async def acquire(self, key: PoolKey, deadline: float) -> Connection:
        """A connection for `key`, idle or new; UpstreamTimeout if none is available by `deadline`."""
        if self._closed:
            raise UpstreamConnectError("the connection pool is closed")
        loop = asyncio.get_running_loop()
        if self._in_use >= self._max or self._waiters:
            await self._wait_for_slot(loop, deadline)
            self._in_use += 1
            if self._in_use < self._max:
                self._wake_next()  # several slots may have freed at once
        else:
            self._in_use += 1
        try:
            idle = self._idle.get(key)
            if idle:
                oldest_ok = loop.time() - self._idle_timeout_s
                while idle:
                    conn = idle.pop()
                    if conn.idle_since >= oldest_ok and conn.usable():
                        return conn
                    conn.close()  # closed by the peer while idle, or idle too long
            return await self._connect(loop, key, deadline)
        except BaseException:
            self._in_use -= 1
            self._wake_next()
            raise

    def release(self, conn: Connection, reusable: bool) -> None:
        self._in_use -= 1
        if reusable and not self._closed:
            loop = asyncio.get_running_loop()
            conn.idle_since = loop.time()
            q = self._idle.get(conn.key)
            if q is None:
                q = self._idle[conn.key] = deque()
            q.append(conn)
            if self._sweep_handle is None:
                self._sweep_handle = loop.call_later(self._sweep_interval(), self._sweep)
        else:
            conn.close()
        self._wake_next()

    async def close(self) -> None:
        self._closed = True
        if self._sweep_handle is not None:
            self._sweep_handle.cancel()
            self._sweep_handle = None
        for q in self._idle.values():
            for conn in q:
                conn.close()
        self._idle.clear()
        for w in self._waiters:
            if not w.done():
                w.set_exception(UpstreamConnectError("the connection pool is closed"))
        self._waiters.clear()
        await asyncio.sleep(0)  # let the transports run connection_lost

    # --- internals
    async def _wait_for_slot(self, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        while True:
            fut: asyncio.Future[None] = loop.create_future()
            self._waiters.append(fut)
            try:
                async with asyncio.timeout_at(deadline):
                    await fut
            except BaseException as exc:
                if fut.done() and not fut.cancelled() and fut.exception() is None:
                    self._wake_next()  # woken, but leaving without the slot: pass the turn on
                if isinstance(exc, TimeoutError):
                    raise UpstreamTimeout(f"no upstream connection became free (pool limit {self._max})") from exc
                raise
            finally:
                self._waiters.remove(fut)
            if self._in_use < self._max:
                return

    def _wake_next(self) -> None:
        for w in self._waiters:
            if not w.done():
                w.set_result(None)
                return

    async def _connect(self, loop: asyncio.AbstractEventLoop, key: PoolKey, deadline: float) -> Connection:
        scheme, host, port = key
        ctx: ssl.SSLContext | None = None
        if scheme == "https":
            if self._ssl_context is None:
                self._ssl_context = ssl.create_default_context()
            ctx = self._ssl_context
        timeout = min(self._connect_timeout_s, deadline - loop.time())
        try:
            async with asyncio.timeout(timeout):
                _, conn = await loop.create_connection(
                    lambda: Connection(key, loop), host, port, ssl=ctx, server_hostname=host if ctx else None
                )
        except TimeoutError as exc:
            raise UpstreamTimeout(f"connecting to {scheme}://{host}:{port} timed out") from exc
        except OSError as exc:  # refused, unreachable, DNS, TLS handshake / certificate
            raise UpstreamConnectError(f"cannot connect to {scheme}://{host}:{port}: {type(exc).__name__}") from exc
        self.opened += 1
        return conn

    def _sweep_interval(self) -> float:
        return max(1.0, self._idle_timeout_s / 2)

    def _sweep(self) -> None:
        self._sweep_handle = None
        oldest_ok = asyncio.get_running_loop().time() - self._idle_timeout_s
        for key, q in list(self._idle.items()):
            keep = deque(c for c in q if c.idle_since >= oldest_ok and c.usable())
            for c in q:
                if c not in keep:
                    c.close()
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]
        if self._idle and not self._closed:
            self._sweep_handle = asyncio.get_running_loop().call_later(self._sweep_interval(), self._sweep)
