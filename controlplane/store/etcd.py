"""etcd v3 implementation of the KV contract (via aetcd).

aetcd, grpc and timeout exceptions are translated here, once: unreachable
endpoints become StoreUnavailable, failed compares become Conflict. With several
endpoints the store fails over to the next one when a call cannot connect
(reads retry immediately; commits do not, since their outcome is unknown).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from contextlib import suppress
from typing import Any, TypeVar

import aetcd
import grpc
from aetcd import exceptions as aetcd_exceptions
from aetcd import rpc
from aetcd import watcher as aetcd_watcher

from ..errors import Conflict, PolicyInvalid, StoreUnavailable
from .base import Changes, Entry, join_root
from .etcd_security import EtcdSecurity

log = logging.getLogger(__name__)
T = TypeVar("T")

_UNREACHABLE = (aetcd.ConnectionFailedError, aetcd.ConnectionTimeoutError, aetcd.WatchTimeoutError, TimeoutError)
_CHANNEL_OPTIONS = {
    # Snapshots of large deployments exceed gRPC's 4 MiB default.
    "grpc.max_receive_message_length": 64 * 1024 * 1024,
    # Detect half-open connections (no RST after a partition) so watches re-establish.
    "grpc.keepalive_time_ms": 10_000,
    "grpc.keepalive_timeout_ms": 5_000,
    # gRPC's default reconnect backoff grows to 120 s: calls would keep failing long after etcd is back.
    "grpc.initial_reconnect_backoff_ms": 200,
    "grpc.min_reconnect_backoff_ms": 200,
    "grpc.max_reconnect_backoff_ms": 2_000,
}


class _TLSClient(aetcd.Client):
    """aetcd 1.0 only builds plaintext channels: this is its connect() over a TLS channel (same steps)."""

    def __init__(self, *args: Any, credentials: grpc.ChannelCredentials, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._tls_credentials = credentials

    async def connect(self) -> None:
        if self._connected.is_set():
            return
        if self._is_connecting:  # type: ignore[has-type]  # aetcd is untyped
            await asyncio.wait_for(self._connected.wait(), self._connect_wait_timeout)
            return
        try:
            self._is_connecting = True
            self.channel = rpc.secure_channel(f"{self._host}:{self._port}", self._tls_credentials,
                                              options=self._options.items())
            if self._username is not None and self._password is not None:
                self.auth_stub = rpc.AuthStub(self.channel)
                request = rpc.AuthenticateRequest(name=self._username, password=self._password)
                resp = await self.auth_stub.Authenticate(request, timeout=self._timeout)
                self.metadata = (("token", resp.token),)
            self.kvstub = rpc.KVStub(self.channel)
            self.clusterstub = rpc.ClusterStub(self.channel)
            self.leasestub = rpc.LeaseStub(self.channel)
            self.maintenancestub = rpc.MaintenanceStub(self.channel)
            self._watcher = aetcd_watcher.Watcher(rpc.WatchStub(self.channel), timeout=self._timeout,
                                                  metadata=self.metadata)
            self._connected.set()
        except rpc.AioRpcError as exc:
            aetcd_exceptions._handle_exception(exc)  # raises the matching aetcd error, as aetcd.Client does
        finally:
            self._is_connecting = False


async def _quietly(op: Awaitable[Any]) -> None:
    with suppress(Exception):
        await op


def _auth_token_expired(exc: BaseException) -> bool:
    # etcd drops a simple auth token after --auth-token-ttl of disuse; aetcd never re-authenticates by itself.
    return "invalid auth token" in str(exc)


class EtcdKV:
    def __init__(
        self,
        endpoints: Sequence[tuple[str, int]],
        root: str,
        *,
        timeout_s: float = 5.0,
        retry_s: float = 0.2,
        max_retry_s: float = 5.0,
        security: EtcdSecurity | None = None,
    ):
        if not endpoints:
            raise ValueError("at least one etcd endpoint is required")
        self._security = security or EtcdSecurity()
        self._endpoints = list(endpoints)
        self._root = root
        self._timeout_s = timeout_s
        self._retry_s = retry_s
        self._max_retry_s = max_retry_s
        self._idx = 0
        self._client = self._new_client()
        self._leases: dict[str, int] = {}  # ephemeral key -> lease kept alive by re-puts
        # put_ephemeral_many: one lease per TTL shared by all its keys, refreshed at most every TTL/3, and the
        # monotonic time each key was last put (a key not put again within its TTL is deleted by a later call).
        self._shared_leases: dict[int, tuple[int, float]] = {}  # ttl -> (lease id, refreshed at)
        self._ephemeral_put: dict[str, tuple[int, float]] = {}  # key -> (ttl, put at)
        self._closing: set[asyncio.Task[None]] = set()
        self._closed = False

    # -- plumbing -------------------------------------------------------------

    def _new_client(self) -> aetcd.Client:
        host, port = self._endpoints[self._idx]
        sec = self._security
        # aetcd annotates timeout as int but passes it straight to grpc, which takes float seconds.
        kwargs: dict[str, Any] = dict(host=host, port=port, timeout=self._timeout_s, options=_CHANNEL_OPTIONS,
                                      username=sec.username, password=sec.password)
        if sec.tls:
            return _TLSClient(credentials=sec.credentials(), **kwargs)
        return aetcd.Client(**kwargs)

    def _reauthenticate(self, failed: aetcd.Client) -> None:
        """A fresh client (same endpoint) logs in again; the old one is closed in the background."""
        if failed is not self._client or self._closed:
            return
        self._client = self._new_client()
        task = asyncio.get_running_loop().create_task(failed.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _where(self) -> str:
        return ",".join(f"{h}:{p}" for h, p in self._endpoints)

    def _kb(self, key: str) -> bytes:
        return join_root(self._root, key).encode()

    def _failover(self, failed: aetcd.Client) -> None:
        if len(self._endpoints) == 1 or failed is not self._client or self._closed:
            return  # a single channel reconnects by itself; or someone already moved on
        self._idx = (self._idx + 1) % len(self._endpoints)
        self._client = self._new_client()
        task = asyncio.get_running_loop().create_task(failed.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _call(self, op: Callable[[aetcd.Client], Awaitable[T]], *, idempotent: bool) -> T:
        if self._closed:
            raise StoreUnavailable("the etcd store is closed")
        last: BaseException | None = None
        relogged = False
        attempts = len(self._endpoints) if idempotent else 1
        while attempts > 0:
            attempts -= 1
            client = self._client
            try:
                return await op(client)
            except _UNREACHABLE as exc:
                last = exc
                self._failover(client)
            except (aetcd.ClientError, grpc.RpcError) as exc:
                rejected = isinstance(exc, aetcd.InvalidArgumentError)
                if rejected and "too many operations" in str(exc):
                    raise PolicyInvalid(
                        ["the change touches more items than etcd allows in one transaction; "
                         "raise etcd's --max-txn-ops or apply the policy in smaller steps"]
                    ) from exc
                if not relogged and self._security.username and _auth_token_expired(exc):
                    # etcd refused the request before applying it, so even a commit is safe to retry once.
                    relogged, attempts = True, attempts + 1
                    self._reauthenticate(client)
                    continue
                if rejected:
                    raise StoreUnavailable(f"etcd rejected the request: {exc}") from exc
                raise StoreUnavailable(f"etcd error at {self._where()}: {exc}") from exc
        raise StoreUnavailable(f"etcd is unreachable at {self._where()}: {last}") from last

    # -- reads ----------------------------------------------------------------

    async def get(self, key: str) -> Entry | None:
        kv = await self._call(lambda c: c.get(self._kb(key)), idempotent=True)
        return Entry(kv.value, kv.mod_revision) if kv is not None else None

    async def get_prefix(self, prefix: str) -> tuple[dict[str, Entry], int]:
        res = await self._call(lambda c: c.get_prefix(self._kb(prefix)), idempotent=True)
        cut = len(self._kb(""))
        return {kv.key[cut:].decode(): Entry(kv.value, kv.mod_revision) for kv in res.kvs}, res.header.revision

    async def read_many(self, keys: Sequence[str], prefixes: Sequence[str]
                        ) -> tuple[dict[str, Entry | None], dict[str, dict[str, Entry]]]:
        """Several keys and prefixes in one consistent read: one round trip instead of one per item (a mint
        reads six things; at 200 mints/s each etcd call's client-side CPU adds up, issue 16)."""
        async def op(c: aetcd.Client) -> list[Any]:
            tx = c.transactions
            ops: list[Any] = [tx.get(self._kb(k)) for k in keys]
            ops += [tx.get(self._kb(p), range_end=aetcd.utils.prefix_range_end(self._kb(p))) for p in prefixes]
            _, responses = await c.transaction(compare=[], success=ops, failure=[])
            return list(responses)

        responses = await self._call(op, idempotent=True)
        cut = len(self._kb(""))
        singles: dict[str, Entry | None] = {}
        for key, found in zip(keys, responses[:len(keys)], strict=True):
            singles[key] = Entry(found[0][1].value, found[0][1].mod_revision) if found else None
        ranges = {prefix: {meta.key[cut:].decode(): Entry(value, meta.mod_revision) for value, meta in found}
                  for prefix, found in zip(prefixes, responses[len(keys):], strict=True)}
        return singles, ranges

    async def watch_events(self, prefix: str, start_revision: int) -> AsyncIterator[tuple[str, Entry | None]]:
        """Every change under `prefix` after `start_revision`, as (relative key, entry or None = deleted), in
        revision order; one transaction's events arrive together. Raises StoreUnavailable when the watch
        breaks or history was compacted: the caller starts over from a full read (issue 16's key deltas)."""
        cut = len(self._kb(""))
        try:
            watch = await self._client.watch_prefix(self._kb(prefix), start_revision=start_revision + 1)
        except Exception as exc:
            raise StoreUnavailable(f"cannot watch {prefix} at {self._where()}: {exc}") from exc
        try:
            async for event in watch:
                entry = Entry(event.kv.value, event.kv.mod_revision) if event.kind == "PUT" else None
                yield event.kv.key[cut:].decode(), entry
        except Exception as exc:
            raise StoreUnavailable(f"watch on {prefix} at {self._where()} broke: {exc}") from exc
        finally:
            with suppress(Exception):
                await watch.cancel()

    async def changes_since(self, prefix: str, since: int, known: Collection[str]) -> Changes:
        """What changed under `prefix` after revision `since` up to the last write of `{prefix}version` (every
        policy write rewrites it), replayed from etcd's watch history: O(change), never a read of the whole
        prefix (an apply racing mints re-reads only the mints, issue 16). Raises StoreUnavailable when the
        history was compacted or does not arrive in time: the caller reads everything instead."""
        marker = await self.get(prefix + "version")
        target = marker.mod_revision if marker else 0
        puts: dict[str, Entry] = {}
        deleted: set[str] = set()
        if target <= since:
            return Changes(puts, deleted, since)
        cut = len(self._kb(""))
        try:
            watch = await self._client.watch_prefix(self._kb(prefix), start_revision=since + 1)
        except Exception as exc:
            raise StoreUnavailable(f"cannot watch {prefix} at {self._where()}: {exc}") from exc
        reached = False
        events = aiter(watch)
        try:
            async with asyncio.timeout(5.0):
                while True:
                    # The target revision's events come in one watch response: once its version marker is
                    # seen, the rest of that transaction is already buffered (a short wait, not a guess).
                    try:
                        async with asyncio.timeout(0.005 if reached else None):
                            event = await anext(events)
                    except TimeoutError:
                        break
                    rev = event.kv.mod_revision
                    if rev > target:
                        break
                    key = event.kv.key[cut:].decode()
                    if event.kind == "PUT":
                        puts[key] = Entry(event.kv.value, rev)
                        deleted.discard(key)
                    else:
                        puts.pop(key, None)
                        deleted.add(key)
                    reached = reached or (key == prefix + "version" and rev >= target)
        except TimeoutError as exc:
            raise StoreUnavailable(f"the change history of {prefix} at {self._where()} did not arrive") from exc
        except Exception as exc:
            raise StoreUnavailable(f"watch on {prefix} at {self._where()} broke: {exc}") from exc
        finally:
            # Not awaited: cancelling waits for etcd's confirmation, which would double the catch-up's time.
            cancelling = asyncio.get_running_loop().create_task(_quietly(watch.cancel()))
            self._closing.add(cancelling)
            cancelling.add_done_callback(self._closing.discard)
        return Changes(puts, deleted, target)

    async def _revision(self) -> int:
        root = self._kb("")
        res = await self._call(lambda c: c.get_range(root, root + b"\0"), idempotent=True)
        return int(res.header.revision)

    # -- writes ---------------------------------------------------------------

    async def commit(self, puts: Mapping[str, bytes], deletes: Iterable[str] = (), *,
                     if_revision_of: Mapping[str, int] | None = None) -> int:
        expected = dict(if_revision_of or {})
        deletes = list(deletes)
        for key in deletes:
            self._ephemeral_put.pop(key, None)  # deleted by the caller: nothing for put_ephemeral_many to expire

        async def op(c: aetcd.Client) -> int:
            tx = c.transactions
            compare = [tx.mod(self._kb(k)) == rev for k, rev in expected.items()]
            ops: list[Any] = [tx.put(self._kb(k), v) for k, v in puts.items()]
            ops += [tx.delete(self._kb(k)) for k in deletes]
            ok, responses = await c.transaction(compare=compare, success=ops, failure=[])
            if not ok:
                raise Conflict(f"the policy changed concurrently ({', '.join(expected)}); retry with fresh state")
            if not responses:
                return -1
            first = responses[0]
            return int(getattr(first, first.WhichOneof("response")).header.revision)

        rev = await self._call(op, idempotent=False)
        return rev if rev >= 0 else await self._revision()

    async def put_ephemeral(self, key: str, value: bytes, ttl_s: float) -> None:
        async def op(c: aetcd.Client) -> None:
            lease_id = self._leases.pop(key, None)
            if lease_id is not None:
                reply = await c.refresh_lease(lease_id)
                if reply is None or reply.TTL <= 0:
                    lease_id = None  # lapsed: the key is already gone, start a new lease
            if lease_id is None:
                lease_id = (await c.lease(max(2, math.ceil(ttl_s)))).id
            await c.put(self._kb(key), value, lease=lease_id)
            self._leases[key] = lease_id  # only cached once the put worked, so failures re-grant

        await self._call(op, idempotent=False)

    async def put_ephemeral_many(self, values: Mapping[str, bytes], ttl_s: float) -> None:
        """One transaction under one shared lease instead of a lease refresh and a put per key: at 100 nodes
        the per-key leases were most of the control plane's idle CPU (issue 16). A key not put again within
        `ttl_s` is deleted by the next call (the lease stays alive for the others); when no call comes (this
        control plane died) the lease lapses and every key goes."""
        ttl = max(2, math.ceil(ttl_s))

        async def op(c: aetcd.Client) -> None:
            now = time.monotonic()
            lease = self._shared_leases.pop(ttl, None)
            if lease is not None and now - lease[1] >= ttl / 3:
                reply = await c.refresh_lease(lease[0])
                lease = None if reply is None or reply.TTL <= 0 else (lease[0], now)
            if lease is None:
                lease = ((await c.lease(ttl)).id, now)
            stale = [k for k, (t, at) in self._ephemeral_put.items() if t == ttl and now - at > ttl_s
                     and k not in values]
            tx = c.transactions
            ops: list[Any] = [tx.put(self._kb(k), v, lease=lease[0]) for k, v in values.items()]
            ops += [tx.delete(self._kb(k)) for k in stale]
            await c.transaction(compare=[], success=ops, failure=[])
            self._shared_leases[ttl] = lease  # only cached once the puts worked, so failures re-check it
            for k in stale:
                self._ephemeral_put.pop(k, None)
            self._ephemeral_put.update((k, (ttl, now)) for k in values)

        if values:
            await self._call(op, idempotent=False)

    # -- watch ----------------------------------------------------------------

    async def watch_prefix(self, prefix: str, start_revision: int = 0) -> AsyncIterator[int]:
        key = self._kb(prefix)
        last = start_revision
        delay = self._retry_s
        while not self._closed:
            client = self._client
            try:
                if last == 0:
                    last = await self._revision()
                watch = await client.watch_prefix(key, start_revision=last + 1)
                delay = self._retry_s
                try:
                    async for event in watch:
                        if event.kv.mod_revision > last:
                            last = event.kv.mod_revision
                            yield last
                finally:
                    with suppress(Exception):
                        await watch.cancel()
            except aetcd.RevisionCompactedError:
                # The history we would replay is gone: re-list so the caller re-reads everything.
                with suppress(StoreUnavailable):
                    last = await self._revision()
                    log.info("etcd watch on %s lost compacted history; resuming at revision %d", prefix, last)
                    yield last
            except Exception as exc:  # any failure: back off and re-watch from `last`, etcd replays what we missed
                if self._closed:
                    return
                log.warning("etcd watch on %s interrupted (%s); retrying in %.1fs", prefix, exc, delay)
                if isinstance(exc, _UNREACHABLE):
                    self._failover(client)
                elif self._security.username and _auth_token_expired(exc):
                    self._reauthenticate(client)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_retry_s)

    async def close(self) -> None:
        if self._closed:
            return
        # Revoke liveness leases so this instance's nodes show disconnected now rather than after the TTL.
        leases = [*self._leases.values(), *(lease for lease, _ in self._shared_leases.values())]
        if leases:
            with suppress(Exception):
                async with asyncio.timeout(1.0):
                    await asyncio.gather(*(self._client.revoke_lease(i) for i in leases), return_exceptions=True)
        self._closed = True
        self._leases.clear()
        self._shared_leases.clear()
        self._ephemeral_put.clear()
        with suppress(Exception):
            await self._client.close()
        for task in list(self._closing):
            with suppress(Exception):
                await task
