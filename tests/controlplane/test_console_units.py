"""Console and remote-query building blocks without a cluster: sessions, the wire codec, the query guard,
the usage-store settings, budget projection, and the console on the dev shape (in-process chDB)."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from controlplane.admin_auth import Role
from controlplane.budget.visibility import BudgetRow
from controlplane.console.budgets import project
from controlplane.console.sessions import Session, SessionStore
from controlplane.usage_source import UsageSourceSettings
from ingest.query_endpoint import QueryRefused, check_query
from ingest.query_wire import decode_rows, encode_rows
from interlock_contracts.settings.common import SettingsError


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_sessions_expire_when_idle_and_at_their_maximum_age_and_end_at_sign_out() -> None:
    clock = Clock()
    store = SessionStore(idle_s=60, max_s=300, clock=clock)
    sid = store.create(Session(name="fin", role=Role.VIEWER))
    clock.t += 59
    assert store.get(sid) is not None  # seen: the idle clock restarts
    clock.t += 59
    assert store.get(sid) is not None
    clock.t += 61
    assert store.get(sid) is None  # idle too long
    sid = store.create(Session(name="fin", role=Role.VIEWER))
    for _ in range(6):
        clock.t += 55
        alive = store.get(sid)
    assert alive is None  # 330 s after sign-in, although never idle for a minute
    sid = store.create(Session(name="fin", role=Role.VIEWER))
    store.end(sid)
    assert store.get(sid) is None and store.get("forged") is None and store.get(None) is None


def test_session_csrf_and_roles() -> None:
    s = Session(name="ops", role=Role.OPERATOR)
    assert s.csrf_ok(s.csrf) and not s.csrf_ok("") and not s.csrf_ok(None) and not s.csrf_ok(s.csrf + "x")
    assert s.at_least(Role.VIEWER) and s.at_least(Role.OPERATOR) and not s.at_least(Role.ADMIN)
    key = Session(name="k", role=None, key_id="vk_1")
    assert not key.staff and not key.at_least(Role.VIEWER) and key.label == "key"
    assert Session(name="a", role=Role.ADMIN).csrf != Session(name="a", role=Role.ADMIN).csrf


def test_wire_codec_keeps_decimals_exact_and_nested_values() -> None:
    rows = [("a", 3, Decimal("0.000000000001"), True, [("p", 200)], {"task": "T-1"},
             datetime(2026, 12, 6, 1, 2, 3, 4, tzinfo=UTC))]
    import json

    back = decode_rows(json.loads(json.dumps(encode_rows(rows))))
    assert back[0][2] == Decimal("0.000000000001") and isinstance(back[0][2], Decimal)
    assert back[0][:2] == ("a", 3) and back[0][3] is True and back[0][4] == (("p", 200),)
    assert back[0][5] == {"task": "T-1"} and back[0][6] == rows[0][6]


@pytest.mark.parametrize("body, why", [
    ({"sql": "INSERT INTO t VALUES (1)"}, "SELECT"),
    ({"sql": "DROP TABLE interlock.usage_events"}, "SELECT"),
    ({"sql": "SELECT 1; DROP TABLE x"}, "SELECT"),
    ({"sql": "SELECT 1", "settings": {"readonly": 0}}, "readonly"),
    ({"sql": "SELECT 1", "settings": {"max_memory_usage": 1}}, "max_memory_usage"),
    ({"sql": 5}, "string"),
    (["SELECT 1"], "object"),
])  # fmt: skip
def test_query_guard_refuses_anything_but_one_read(body: object, why: str) -> None:
    with pytest.raises(QueryRefused, match=why):
        check_query(body)


def test_query_guard_forces_readonly() -> None:
    _sql, params, settings = check_query({"sql": "SELECT {p0:String}", "parameters": {"p0": "x"},
                                         "settings": {"do_not_merge_across_partitions_select_final": 1}})
    assert settings["readonly"] == 2 and params == {"p0": "x"}


def test_usage_store_settings() -> None:
    assert UsageSourceSettings.from_env({}).store == ""
    s = UsageSourceSettings.from_env({"INTERLOCK_USAGE_STORE": "ingest+http://127.0.0.1:8090",
                                      "INTERLOCK_USAGE_STORE_TOKEN": "tok-zq9"})
    assert s.token == b"tok-zq9" and "tok-zq9" not in repr(s)
    with pytest.raises(SettingsError, match="INTERLOCK_USAGE_STORE_TOKEN"):
        UsageSourceSettings.from_env({"INTERLOCK_USAGE_STORE": "ingest+http://127.0.0.1:8090"})
    with pytest.raises(SettingsError, match="chdb:///dir"):
        UsageSourceSettings.from_env({"INTERLOCK_USAGE_STORE": "postgres://x"})
    shown = UsageSourceSettings.from_env({"INTERLOCK_USAGE_STORE": "https://u:secretpw@ch:8443"}).describe()
    assert "secretpw" not in shown


def _budget(settled: int, limit: int, resets: int) -> BudgetRow:
    return BudgetRow(kind="budget", limit_id="b", scope="team", scope_id="eng", window="month", window_key="2026-12",
                     unit="usd", limit=limit, settled=settled, leased=0, reserved=0, remaining=limit - settled,
                     overshoot=0, reclaimed=0, nodes=0, resets_unix_ms=resets, current=True)


def test_burn_down_projection() -> None:
    # a quarter spent after a day: runs out after four days, before a reset at day 30
    assert project(_budget(25, 100, 30 * 86_400_000), 0, 86_400_000) == 4 * 86_400_000
    assert project(_budget(1, 100, 30 * 86_400_000), 0, 86_400_000) == 0  # not before the reset
    assert project(_budget(0, 100, 30 * 86_400_000), 0, 86_400_000) == 0  # nothing spent yet


async def test_console_on_the_dev_shape(tmp_path: Path) -> None:
    """`interlock dev`: the console and the usage routes over the in-process chDB, after real traffic."""
    from interlock.dev.stack import DevStack
    from tests.e2e.test_e2e_devstack import _chat, _env, _settings

    stack = DevStack(_settings(tmp_path / "dev"), env=_env())
    await stack.start()
    try:
        await _chat(stack)
        admin = f"http://127.0.0.1:{stack.settings.admin_port}"
        token = stack._admin_token
        async with httpx.AsyncClient(base_url=admin, timeout=30) as h:
            for _ in range(100):  # the usage sink writes in batches: wait for the row to land
                spend = (await h.get("/admin/v1/usage/spend", params={"since": "1h"},
                                     headers={"Authorization": f"Bearer {token}"})).json()
                if spend.get("total", {}).get("requests"):
                    break
                await asyncio.sleep(0.1)
            assert spend["total"]["requests"] == 1
            csrf = re.search(r'name="csrf" value="([^"]+)"', (await h.get("/ui/login")).text)[1]  # type: ignore[index]
            assert (await h.post("/ui/login", data={"csrf": csrf, "secret": token})).status_code == 303
            page = await h.get("/ui/spend", params={"by": "team", "since": "1h"})
            assert page.status_code == 200 and token not in page.text
            assert 'data-testid="total-requests" data-value="1"' in page.text
            assert spend["total"]["cost_usd"] in page.text
    finally:
        await stack.stop()


def test_burn_chart_spans_the_window_and_carries_running_spend() -> None:
    from controlplane.console.budgets import PICO, burn_chart

    day = 86_400_000
    row = _budget(settled=int(2 * PICO), limit=int(10 * PICO), resets=10 * day)
    burn = [(1 * day * 1000, Decimal(1)), (3 * day * 1000, Decimal(2))]  # running sums at days 1 and 3 (µs)
    ch = burn_chart(row, 0, 4 * day + 5, 86_400, burn)
    spent, projected, limit = (d["data"] for d in ch["data"]["datasets"])
    assert len(ch["data"]["labels"]) == 11  # days 0..10: the whole window, not only the part with data
    assert spent[:6] == [0.0, 1.0, 1.0, 2.0, 2.0, None]  # carried across day 2 and 4, nothing after now
    assert all(v is None for v in spent[5:])
    assert limit == [10.0] * 11
    assert projected[-1] == pytest.approx(2 / (4 * day + 5) * 11 * day)  # the rate so far, extended
