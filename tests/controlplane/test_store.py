"""The KV contract, run against both the embedded sqlite store and a real etcd."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator

import aetcd
import pytest

from controlplane.errors import Conflict, StoreUnavailable
from controlplane.store import KV, open_store, parse_etcd_endpoints
from tests.fixtures.etcd import EtcdServer

pytestmark = pytest.mark.integration


async def next_revision(it: AsyncIterator[int]) -> int:
    return await asyncio.wait_for(anext(it), 10.0)


async def test_commit_get_and_monotonic_revisions(kv: KV) -> None:
    r1 = await kv.commit({"a/1": b"one", "a/2": b"two"})
    r2 = await kv.commit({"a/1": b"uno"})
    r3 = await kv.commit({}, ["a/2"])
    assert r1 < r2 < r3
    entries, rev = await kv.get_prefix("a/")
    assert rev >= r3
    assert {k: (e.value, e.mod_revision) for k, e in entries.items()} == {"a/1": (b"uno", r2)}
    assert (await kv.get("a/1")).value == b"uno"  # type: ignore[union-attr]
    assert await kv.get("a/2") is None
    assert await kv.get("missing") is None


async def test_prefix_is_a_prefix_not_a_glob(kv: KV) -> None:
    await kv.commit({"ab/x": b"1", "a/x": b"2", "a": b"3"})
    entries, _ = await kv.get_prefix("a/")
    assert set(entries) == {"a/x"}


async def test_empty_commit_returns_current_revision(kv: KV) -> None:
    r1 = await kv.commit({"k": b"v"})
    assert await kv.commit({}, [], if_revision_of={"k": r1}) == r1
    with pytest.raises(Conflict):
        await kv.commit({}, [], if_revision_of={"k": r1 - 1})


async def test_compare_and_swap(kv: KV) -> None:
    r1 = await kv.commit({"meta": b"1"}, if_revision_of={"meta": 0})  # 0 = must not exist yet
    with pytest.raises(Conflict):
        await kv.commit({"meta": b"again"}, if_revision_of={"meta": 0})
    r2 = await kv.commit({"meta": b"2", "item": b"x"}, if_revision_of={"meta": r1})
    with pytest.raises(Conflict):  # stale revision: nothing at all is written
        await kv.commit({"meta": b"3", "other": b"y"}, ["item"], if_revision_of={"meta": r1})
    entries, _ = await kv.get_prefix("")
    assert {k: e.value for k, e in entries.items()} == {"meta": b"2", "item": b"x"}
    assert entries["meta"].mod_revision == r2


async def test_watch_yields_after_commits_and_deletes(kv: KV) -> None:
    _, start = await kv.get_prefix("w/")
    it = kv.watch_prefix("w/", start)
    r_other = await kv.commit({"elsewhere/x": b"1"})
    r_put = await kv.commit({"w/a": b"1"})
    assert await next_revision(it) == r_put > r_other
    r_del = await kv.commit({}, ["w/a"])
    assert await next_revision(it) == r_del
    await it.aclose()  # type: ignore[attr-defined]


async def test_watch_replays_changes_made_before_it_started(kv: KV) -> None:
    _, start = await kv.get_prefix("w/")
    r = await kv.commit({"w/a": b"1"})
    it = kv.watch_prefix("w/", start)
    assert await next_revision(it) == r
    await it.aclose()  # type: ignore[attr-defined]


async def test_ephemeral_keys_expire(kv: KV) -> None:
    await kv.put_ephemeral("live/n1", b"a", ttl_s=2)
    await kv.put_ephemeral("live/n1", b"b", ttl_s=2)  # re-put refreshes and updates
    assert (await kv.get("live/n1")).value == b"b"  # type: ignore[union-attr]
    deadline = time.monotonic() + 10
    while await kv.get("live/n1") is not None:
        assert time.monotonic() < deadline, "ephemeral key never expired"
        await asyncio.sleep(0.2)



async def test_ephemeral_many_expire_per_key_and_all_when_no_longer_put(kv: KV) -> None:
    """Many liveness keys in one call (issue 16; one shared lease on etcd): a key not put again within its TTL
    goes even while the others are kept alive, and all go once nobody puts them any more."""
    await kv.put_ephemeral_many({"live/a": b"1", "live/b": b"1"}, ttl_s=2)
    assert {k for k in (await kv.get_prefix("live/"))[0]} == {"live/a", "live/b"}
    deadline = time.monotonic() + 10
    while await kv.get("live/b") is not None:  # only a is refreshed
        assert time.monotonic() < deadline, "a key not put again never expired"
        await kv.put_ephemeral_many({"live/a": b"2"}, ttl_s=2)
        await asyncio.sleep(0.4)
    assert (await kv.get("live/a")).value == b"2"  # type: ignore[union-attr]
    deadline = time.monotonic() + 10
    while await kv.get("live/a") is not None:  # nobody puts any more: the lease (etcd) or the row lapses
        assert time.monotonic() < deadline, "ephemeral keys never expired"
        await asyncio.sleep(0.2)

async def test_sqlite_persists_across_reopen(tmp_path, store_prefix: str) -> None:
    url = f"sqlite:///{tmp_path}/p.db"
    kv = open_store(url, store_prefix)
    r = await kv.commit({"a": b"1"})
    await kv.close()
    kv = open_store(url, store_prefix)
    try:
        entries, rev = await kv.get_prefix("")
        assert entries["a"].value == b"1" and entries["a"].mod_revision == r and rev == r
        assert await kv.commit({"b": b"2"}) == r + 1
    finally:
        await kv.close()


async def test_sqlite_prefixes_isolate(tmp_path) -> None:
    url = f"sqlite:///{tmp_path}/p.db"
    a, b = open_store(url, "/one"), open_store(url, "/two")
    try:
        await a.commit({"k": b"a"})
        assert await b.get("k") is None
    finally:
        await a.close()
        await b.close()


def test_parse_endpoints() -> None:
    assert parse_etcd_endpoints("a:1,b") == [("a", 1), ("b", 2379)]
    assert parse_etcd_endpoints("[::1]:2380") == [("[::1]", 2380)]
    with pytest.raises(ValueError):
        parse_etcd_endpoints("")
    with pytest.raises(ValueError):
        open_store("redis://x", "/p")


# -- etcd only: outages, failover, compaction ---------------------------------


async def test_etcd_outage_raises_unavailable_and_watch_survives(etcd_server: EtcdServer, store_prefix: str) -> None:
    etcd_server.start()
    kv = open_store(etcd_server.url, store_prefix)
    try:
        _, start = await kv.get_prefix("w/")
        it = kv.watch_prefix("w/", start)
        r1 = await kv.commit({"w/a": b"1"})
        assert await next_revision(it) == r1
        pending = asyncio.ensure_future(anext(it))
        etcd_server.stop()
        with pytest.raises(StoreUnavailable):
            await kv.get("w/a")
        with pytest.raises(StoreUnavailable):
            await kv.commit({"w/b": b"2"})
        etcd_server.start()
        r2 = await _commit_when_back(kv, {"w/b": b"2"})
        assert await asyncio.wait_for(pending, 20) == r2
        await it.aclose()  # type: ignore[attr-defined]
    finally:
        etcd_server.start()
        await kv.close()


async def test_etcd_fails_over_to_the_next_endpoint(etcd_server: EtcdServer, store_prefix: str) -> None:
    kv = open_store(f"etcd://127.0.0.1:{_refused_port()},127.0.0.1:{etcd_server.client_port}", store_prefix)
    try:
        assert await kv.get("a") is None  # the read failed over to the live endpoint
        await kv.commit({"a": b"1"})
        assert (await kv.get("a")).value == b"1"  # type: ignore[union-attr]
    finally:
        await kv.close()


async def test_etcd_watch_recovers_from_compaction(etcd_server: EtcdServer, store_prefix: str) -> None:
    kv = open_store(etcd_server.url, store_prefix)
    raw = aetcd.Client("127.0.0.1", etcd_server.client_port)
    try:
        _, start = await kv.get_prefix("w/")
        await kv.commit({"w/a": b"1"})
        r = await kv.commit({"w/a": b"2"})
        await raw.compact(r)
        it = kv.watch_prefix("w/", start)  # its history is gone: it re-lists and reports the current revision
        assert await next_revision(it) >= r
        r3 = await kv.commit({"w/a": b"3"})
        assert await next_revision(it) == r3
        await it.aclose()  # type: ignore[attr-defined]
    finally:
        await raw.close()
        await kv.close()


async def _commit_when_back(kv: KV, puts: dict[str, bytes]) -> int:
    """The client reconnects with a short backoff; until then calls fail fast with StoreUnavailable."""
    deadline = time.monotonic() + 20
    while True:
        try:
            return await kv.commit(puts)
        except StoreUnavailable:
            assert time.monotonic() < deadline, "etcd did not come back"
            await asyncio.sleep(0.1)


def _refused_port() -> int:
    """A loopback port with nothing listening on it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
