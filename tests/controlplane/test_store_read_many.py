"""EtcdKV.read_many (issue 16: a mint's reads in one round trip) answers exactly what get/get_prefix answer."""

from __future__ import annotations

import pytest

from controlplane.store import open_store

pytestmark = pytest.mark.integration


async def test_read_many_matches_get_and_get_prefix(etcd_url: str, store_prefix: str) -> None:
    kv = open_store(etcd_url, store_prefix)
    try:
        await kv.commit({"policy/models/a": b"1", "policy/models/b": b"2", "policy/modelsx/c": b"3",
                         "policy/version": b"v", "policy/aliases/z": b"4"})
        await kv.commit({"policy/models/b": b"2b"})
        read_many = kv.read_many
        singles, ranges = await read_many(["policy/version", "policy/missing"],
                                          ["policy/models/", "policy/aliases/", "policy/budgets/"])
        assert singles == {"policy/version": await kv.get("policy/version"), "policy/missing": None}
        for prefix in ("policy/models/", "policy/aliases/", "policy/budgets/"):
            assert ranges[prefix] == (await kv.get_prefix(prefix))[0]
        assert set(ranges["policy/models/"]) == {"policy/models/a", "policy/models/b"}  # not policy/modelsx/
        assert ranges["policy/models/"]["policy/models/b"].value == b"2b"
        assert ranges["policy/models/"]["policy/models/b"].mod_revision > ranges["policy/models/"]["policy/models/a"].mod_revision
    finally:
        await kv.close()
