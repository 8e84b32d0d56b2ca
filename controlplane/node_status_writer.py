"""One writer for every subscribed node's status record (issue 16).

With 100 nodes acking each published version, one store write per node per second was most of the control
plane's CPU per mint (each etcd write is a gRPC call). Sessions hand their latest record here; one loop
writes all pending records in one transaction per interval (chunked to stay under etcd's --max-txn-ops,
128 by default). A record handed in while a write is in flight goes in the next one; a failed write keeps
its records for the retry unless a newer one replaced them. Liveness keys go the same way, in one
KV.put_ephemeral_many per interval (one shared lease on etcd) instead of a lease refresh and a put per node
per heartbeat, which was most of the control plane's idle CPU at 100 nodes.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress

from .errors import ControlPlaneError
from .store.base import KV

log = logging.getLogger(__name__)


class NodeStatusWriter:
    def __init__(self, kv: KV, *, min_interval_s: float = 1.0, retry_s: float = 1.0, max_ops: int = 100):
        self._kv = kv
        self._min_interval_s = min_interval_s
        self._retry_s = retry_s
        self._max_ops = max_ops
        self._pending: dict[str, bytes] = {}  # store key -> latest encoded record
        self._live: dict[str, tuple[bytes, float]] = {}  # liveness key -> (value, ttl_s)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._healthy = True
        self.writes = 0  # store transactions issued (tests, benchmarks)

    def put(self, key: str, value: bytes) -> None:
        self._pending[key] = value
        self.put_pending()

    def put_live(self, key: str, value: bytes, ttl_s: float) -> None:
        """An ephemeral key (KV.put_ephemeral), written with every other pending one at the next write."""
        self._live[key] = (value, ttl_s)
        self.put_pending()

    def put_pending(self) -> None:
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def discard(self, key: str) -> None:
        """The caller writes this key itself now (a disconnect record): drop what is pending for it."""
        self._pending.pop(key, None)
        self._live.pop(key, None)

    async def close(self, timeout_s: float = 2.0) -> None:
        """Stop the loop, then write what is still pending (best effort: shutdown must not hang on the store)."""
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        pending, self._pending = self._pending, {}
        items = list(pending.items())
        try:
            async with asyncio.timeout(timeout_s):
                for start in range(0, len(items), self._max_ops):
                    await self._kv.commit(dict(items[start:start + self._max_ops]))
        except (ControlPlaneError, TimeoutError) as exc:
            log.warning("could not record %d node status record(s) at shutdown (%s)", len(items), exc)

    async def _write_live(self, live: dict[str, tuple[bytes, float]]) -> None:
        by_ttl: dict[float, dict[str, bytes]] = {}
        for key, (value, ttl_s) in live.items():
            by_ttl.setdefault(ttl_s, {})[key] = value
        many = getattr(self._kv, "put_ephemeral_many", None)
        for ttl_s, values in by_ttl.items():
            if many is None:  # a store without it: one call per key
                for key, value in values.items():
                    await self._kv.put_ephemeral(key, value, ttl_s)
                continue
            items = list(values.items())
            for start in range(0, len(items), self._max_ops):
                await many(dict(items[start:start + self._max_ops]), ttl_s)
                self.writes += 1

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, {}
            try:
                items = list(batch.items())
                while items:
                    chunk, items = dict(items[:self._max_ops]), items[self._max_ops:]
                    try:
                        await self._kv.commit(chunk)
                    except ControlPlaneError:
                        items = list(chunk.items()) + items
                        raise
                    finally:
                        self.writes += 1
                    for key in chunk:
                        batch.pop(key, None)
                live, self._live = self._live, {}
                try:
                    await self._write_live(live)
                except ControlPlaneError:
                    for key, item in live.items():
                        self._live.setdefault(key, item)
                    raise
                if not self._healthy:
                    log.info("node status writes recovered")
                self._healthy = True
                await asyncio.sleep(self._min_interval_s)  # records arriving meanwhile coalesce into one write
            except ControlPlaneError as exc:
                if self._healthy:  # log the transition, not every retry
                    log.warning("cannot record node status (%s); retrying", exc)
                self._healthy = False
                for key, value in batch.items():
                    self._pending.setdefault(key, value)  # a newer record handed in meanwhile wins
                await asyncio.sleep(self._retry_s)
                self._wake.set()
