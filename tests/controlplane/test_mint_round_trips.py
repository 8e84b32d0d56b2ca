"""A mint on etcd costs two store round trips (issue 16: each etcd call is a visible part of the control plane's
CPU per mint): the parent's team is read in the same transaction as the parent, from a hint learned on the
previous mint. The hint is only a hint: what the mint checks is the team the parent record names now."""

from __future__ import annotations

import time
from typing import Any

import pytest

from controlplane.budget.runkeys import RunKeySpec
from controlplane.errors import PolicyInvalid
from controlplane.policy.model import KeyRecord, PolicyDocument
from controlplane.service import StorePolicyService
from controlplane.service_types import KeySpec
from controlplane.store import KV, open_store
from controlplane.store.layout import KEYS, encode, item_key

pytestmark = pytest.mark.integration


class CountingKV:
    """The real etcd store; counts the calls a mint makes."""

    def __init__(self, kv: KV):
        self._kv = kv
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._kv, name)
        if name in ("get", "get_prefix", "read_many", "commit"):
            async def counted(*args: Any, **kwargs: Any) -> Any:
                self.calls.append(name)
                return await attr(*args, **kwargs)
            return counted
        return attr


def doc() -> PolicyDocument:
    return PolicyDocument.model_validate({
        "providers": [{"name": "p", "base_url": "http://127.0.0.1:9"}],
        "models": [{"name": m, "provider": "p", "price": {"input": "1", "output": "2"}} for m in ("m1", "m2")],
        "teams": [{"id": "a", "allowed_models": ["m1"]}, {"id": "b", "allowed_models": ["m2"]}],
    })


async def test_a_mint_is_two_round_trips_and_a_stale_team_hint_is_not_trusted(etcd_url: str,
                                                                              store_prefix: str) -> None:
    kv = open_store(etcd_url, store_prefix)
    counting = CountingKV(kv)
    try:
        svc = StorePolicyService(counting, b"pepper", time.time)  # type: ignore[arg-type]
        await svc.apply(doc())
        parent = (await svc.create_key(KeySpec(name="orchestrator", team="a"))).record
        spec = RunKeySpec(parent=parent.id, ttl_ms=60_000, allowed_models=["m1"])
        await svc.mint_run_key(spec)  # learns the parent's team
        counting.calls.clear()
        minted = await svc.mint_run_key(spec)
        assert counting.calls == ["read_many", "commit"]
        assert minted.record.allowed_models == ["m1"]

        # The parent moves to team b behind the service's back (a direct store write): the hint says a, the
        # mint must check b, which does not allow m1.
        moved = KeyRecord.model_validate_json((await kv.get(item_key(KEYS, parent.id))).value)  # type: ignore[union-attr]
        await kv.commit({item_key(KEYS, parent.id): encode(moved.model_copy(update={"team": "b"}))})
        with pytest.raises(PolicyInvalid, match="not allowed for the parent key's team"):
            await svc.mint_run_key(spec)
        assert (await svc.mint_run_key(RunKeySpec(parent=parent.id, ttl_ms=60_000,
                                                  allowed_models=["m2"]))).record.team == "b"
    finally:
        await kv.close()
