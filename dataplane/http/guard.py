"""The node's open client connections: the connection cap and one periodic sweep that enforces every timeout.

One sweep task per server instead of a timer per request keeps the request path free of timer churn, and
connections stamp their events with `now`, the clock as of the last sweep, instead of reading the clock per
request: a deadline is honoured to within one sweep interval (a quarter of the shortest timeout).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

from interlock_contracts.http_limits import HttpLimits


class Guarded(Protocol):
    def check_deadline(self, now: float) -> None: ...


class ConnectionGuard:
    def __init__(self, limits: HttpLimits, clock: Callable[[], float] = time.monotonic):
        self.limits = limits
        self.clock = clock
        self.now = clock()  # coarse: refreshed by every sweep (and when a connection is admitted)
        self.open: set[Guarded] = set()
        self.refused: set[Guarded] = set()  # refused above the cap, lingering until the client or the sweep closes them
        self.refused_total = 0
        self.timed_out_total = 0
        self._task: asyncio.Task[None] | None = None

    def admit(self, conn: Guarded) -> bool:
        self.now = self.clock()
        if len(self.open) >= self.limits.max_connections:
            self.refused_total += 1
            self.refused.add(conn)
            return False
        self.open.add(conn)
        return True

    def release(self, conn: Guarded) -> None:
        self.open.discard(conn)
        self.refused.discard(conn)

    def start(self, serving: Callable[[], bool]) -> None:
        self._task = asyncio.get_running_loop().create_task(self._sweep_while(serving), name="http-deadlines")

    async def _sweep_while(self, serving: Callable[[], bool]) -> None:
        # Runs while the server accepts, then until its last connection is gone (drain keeps enforcing timeouts).
        interval = self.limits.sweep_interval_s
        while serving() or self.open or self.refused:
            await asyncio.sleep(interval)
            self.sweep()

    def sweep(self) -> None:
        now = self.now = self.clock()
        for conn in [*self.open, *self.refused]:
            conn.check_deadline(now)
