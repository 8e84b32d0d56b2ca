"""Alerts delivered by the control plane: budget thresholds 50/80/95/100% to a signed webhook, Slack and
PagerDuty receivers that fail half the time and sometimes hang, from two control-plane replicas on one etcd;
each threshold arrives exactly once after dedup with a valid signature; a delivery survives a restart of the
control plane mid-retry (the outbox is in the store)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import orjson
import pytest
from aiohttp import web

from controlplane.alerts.formats import SIGNATURE_HEADER, verify
from controlplane.alerts.outbox import OUTBOX, OutboxItem
from controlplane.alerts.service import AlertSettings
from controlplane.backend import ControlPlaneBackend, start_backend
from controlplane.policy.model import PolicyDocument
from controlplane.store import open_store
from interlock_contracts.settings.controlplane import ControlPlaneSettings
from interlock_contracts.v1 import budget_pb2
from tests.fixtures.webapp import serving

HMAC_KEY = "whsec-test-0123456789"
PD_KEY = "pd-routing-key-abc"
ENV = {"ALERT_HMAC": HMAC_KEY, "PD_ROUTING": PD_KEY}
LIMIT_USD = 10
PICO = 10**12
FAST = AlertSettings(tick_s=0.1, http_timeout_s=0.4, claim_s=1.5, max_attempts=100, backoff_s=0.05,
                     backoff_max_s=0.4)


@dataclass
class Receiver:
    """A real HTTP endpoint: answers 500 to `fail` of the requests, hangs past the sender's timeout on `hang`."""

    name: str
    key: str  # how to name the event in a request: "header", "slack" or "pagerduty"
    fail: float = 0.5
    hang: float = 0.1
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    requests: int = 0
    accepted: list[str] = field(default_factory=list)
    bad_signatures: int = 0
    url: str = ""
    closed: bool = False  # True: fail everything

    def event_of(self, req: web.Request, body: bytes) -> str:
        if self.key == "header":
            return req.headers["x-interlock-event-id"]
        d = orjson.loads(body)
        if self.key == "slack":
            return d["text"]
        assert d["routing_key"] == PD_KEY and d["event_action"] == "trigger"
        return d["dedup_key"]

    async def handle(self, req: web.Request) -> web.Response:
        body = await req.read()
        self.requests += 1
        if self.key == "header" and verify(HMAC_KEY, req.headers.get(SIGNATURE_HEADER, ""), body) is None:
            self.bad_signatures += 1
            return web.Response(status=401)
        r = self.rng.random()
        if self.closed or r < self.fail:
            return web.Response(status=500)
        if r < self.fail + self.hang:
            await asyncio.sleep(2)  # past the sender's timeout: it must retry, we must not count this one
            return web.Response(status=200)
        self.accepted.append(self.event_of(req, body))
        return web.Response(status=200)


@pytest.fixture
async def receivers() -> AsyncIterator[dict[str, Receiver]]:
    recs = {"hook": Receiver("hook", "header"), "slack": Receiver("slack", "slack"),
            "pd": Receiver("pd", "pagerduty")}
    async with contextlib.AsyncExitStack() as stack:
        for r in recs.values():
            app = web.Application()
            app.router.add_post("/", r.handle)
            r.url = await stack.enter_async_context(serving(app, shutdown_timeout=0.1)) + "/"
        yield recs


def policy(recs: dict[str, Receiver]) -> PolicyDocument:
    return PolicyDocument.model_validate({
        "providers": [{"name": "p", "base_url": "http://127.0.0.1:9"}],
        "models": [{"name": "m", "provider": "p", "price": {"input": "1", "output": "2"}}],
        "teams": [{"id": "t1"}],
        "budgets": [{"id": "team-life", "scope": "team", "scope_id": "t1", "window": "lifetime",
                     "limit_usd": str(LIMIT_USD)}],
        "destinations": [
            {"id": "hook", "kind": "webhook", "url": recs["hook"].url, "secret_ref": "env:ALERT_HMAC"},
            {"id": "slack", "kind": "slack", "url": recs["slack"].url, "budget_thresholds": [50, 80, 95, 100]},
            {"id": "pd", "kind": "pagerduty", "url": recs["pd"].url, "secret_ref": "env:PD_ROUTING"},
        ],
    })


async def _backend(etcd_url: str, prefix: str) -> ControlPlaneBackend:
    s = ControlPlaneSettings(key_pepper=b"pepper", admin_token=b"t", store=etcd_url, etcd_prefix=prefix,
                             grpc_port=0, heartbeat_s=0.2, budget_lease_ttl_s=2.0)
    return await start_backend(s, alert_settings=FAST, env=ENV)


async def _published(b: ControlPlaneBackend, version: int) -> None:
    deadline = time.monotonic() + 10
    while b.publisher.current is None or b.publisher.current.snapshot.version < version:
        assert time.monotonic() < deadline, "policy was not published"
        await asyncio.sleep(0.02)


async def _spend(b: ControlPlaneBackend, seq: int, usd: float) -> None:
    """What a node reports after serving requests: settled spend on the budget's ledger record."""
    op = budget_pb2.LeaseOp(kind=budget_pb2.LEASE_KIND_BUDGET, limit_id="team-life", window_key="lifetime",
                            settled_delta=int(usd * PICO))
    [grant] = await b.ledger.sync("node-1", seq, [op])
    assert not grant.error, grant.error


async def _until(pred, within_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within_s
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_thresholds_delivered_once_each_from_two_replicas_to_flaky_receivers(
        etcd_url: str, store_prefix: str, receivers: dict[str, Receiver]) -> None:
    a = await _backend(etcd_url, store_prefix)
    b = await _backend(etcd_url, store_prefix)
    try:
        await _published(a, (await a.service.apply(policy(receivers))).version)
        await _published(b, a.publisher.current.snapshot.version)  # type: ignore[union-attr]
        # 4.9 -> 5.1 (50%), 8.3 (80%), 9.6 (95%), 10.2 (100%): each step alone crosses one threshold
        for seq, usd in enumerate((4.9, 0.2, 3.2, 1.3, 0.6), start=1):
            await _spend(a if seq % 2 else b, seq, usd)
            await asyncio.sleep(0.3)
        want = {f"budget_threshold:team-life:lifetime:{t}" for t in (50, 80, 95, 100)}

        def done() -> bool:
            return all(len(set(r.accepted)) == 4 for r in receivers.values())

        await _until(done, 60, "every threshold at every receiver")
        deadline = time.monotonic() + 30
        while (await a.kv.get_prefix(OUTBOX))[0]:  # every entry finished (a hung attempt is retried, then done)
            assert time.monotonic() < deadline, "the outbox did not drain"
            await asyncio.sleep(0.1)
        assert set(receivers["hook"].accepted) == want and set(receivers["pd"].accepted) == want
        slack = set(receivers["slack"].accepted)
        assert len(slack) == 4 and all(f"reached {t}%" in " ".join(slack) for t in (50, 80, 95, 100))
        assert receivers["hook"].bad_signatures == 0
        # the receivers did fail: deliveries were retried, and still nothing beyond the dedup key arrived
        assert sum(r.requests for r in receivers.values()) > 12
        for r in receivers.values():
            assert len(r.accepted) - len(set(r.accepted)) <= 2, (r.name, r.accepted)  # at least once, rarely more
        rows = await a.alerts.recent(100)  # type: ignore[union-attr]
        delivered = [x for x in rows if x.status == "delivered"]
        assert {(x.destination, x.dedup_key) for x in delivered} >= {(d, k) for d in ("hook", "pd") for k in want}
        assert not [x for x in rows if x.status == "dead"]
        # decided once across the replicas: one fired record per threshold, one queue entry per destination each
        fired, _ = await a.kv.get_prefix("alerts/fired/")
        assert len([k for k in fired if "budget_threshold" in k]) == 4
        assert len(delivered) <= 12 + 2, [(x.destination, x.dedup_key) for x in delivered]

    finally:
        await a.close(0)
        await b.close(0)


def test_formats_sign_and_shape() -> None:
    from controlplane.alerts.events import budget_threshold
    from controlplane.alerts.formats import BUILDERS, Target

    ev = budget_threshold("b1", "2026-12", 80, 8 * PICO, 10 * PICO, "team t1", 1_000)
    hook = BUILDERS["webhook"](Target("h", "webhook", "http://x/", HMAC_KEY), ev, 1_700_000_000)
    assert verify(HMAC_KEY, hook.headers[SIGNATURE_HEADER], hook.body) == 1_700_000_000
    assert verify(HMAC_KEY, hook.headers[SIGNATURE_HEADER], hook.body.replace(b"80", b"81")) is None
    assert verify("other-key", hook.headers[SIGNATURE_HEADER], hook.body) is None
    assert orjson.loads(hook.body)["id"] == "budget_threshold:b1:2026-12:80"
    slack = orjson.loads(BUILDERS["slack"](Target("s", "slack", "http://x/"), ev, 0).body)
    assert "80%" in slack["text"] and "$8.00 of $10.00" in slack["text"]
    pd = BUILDERS["pagerduty"](Target("p", "pagerduty", "", PD_KEY), ev, 0)
    body = orjson.loads(pd.body)
    assert pd.url == "https://events.pagerduty.com/v2/enqueue"
    assert (body["routing_key"], body["dedup_key"], body["payload"]["severity"]) == (
        PD_KEY, "budget_threshold:b1:2026-12:80", "warning")


def test_destinations_never_hold_secrets() -> None:
    with pytest.raises(ValueError, match="reference"):
        PolicyDocument.model_validate({"destinations": [
            {"id": "pd", "kind": "pagerduty", "secret_ref": "R0UTINGKEY123"}]})
    with pytest.raises(ValueError, match="needs url"):
        PolicyDocument.model_validate({"destinations": [{"id": "s", "kind": "slack"}]})


async def test_delivery_survives_a_control_plane_restart_mid_retry(
        etcd_url: str, store_prefix: str, receivers: dict[str, Receiver]) -> None:
    hook = receivers["hook"]
    hook.closed = True  # everything fails until the restart
    a = await _backend(etcd_url, store_prefix)
    try:
        await _published(a, (await a.service.apply(policy(receivers))).version)
        await _spend(a, 1, 5.5)  # crosses 50%
        await _until(lambda: hook.requests >= 3, 20, "retries against the failing receiver")
    finally:
        await a.close(0)  # mid-retry: the entry stays in the store's outbox
    kv = open_store(etcd_url, store_prefix)
    try:
        pending = [OutboxItem.decode(e.value) for e in (await kv.get_prefix(OUTBOX))[0].values()]
    finally:
        await kv.close()
    assert [(p.destination, p.event.dedup_key) for p in pending if p.destination == "hook"] == [
        ("hook", "budget_threshold:team-life:lifetime:50")]
    assert all(p.attempts >= 1 for p in pending if p.destination == "hook")
    hook.closed, hook.fail, hook.hang = False, 0.0, 0.0
    seen_before = hook.requests
    b = await _backend(etcd_url, store_prefix)  # a new process on the same store
    try:
        await _until(lambda: "budget_threshold:team-life:lifetime:50" in hook.accepted, 20, "delivery after restart")
        rows = await b.alerts.recent(50)  # type: ignore[union-attr]
        rec = next(x for x in rows if x.destination == "hook" and x.status == "delivered")
        assert rec.attempts >= 2 and hook.requests > seen_before
        assert hook.accepted.count("budget_threshold:team-life:lifetime:50") == 1
    finally:
        await b.close(0)


async def test_cli_lists_deliveries_and_sends_a_test_event(
        etcd_url: str, store_prefix: str, receivers: dict[str, Receiver]) -> None:
    from click.testing import CliRunner

    from controlplane.admin_api import create_admin_app
    from controlplane.admin_server import serve_admin
    from interlock.cli.main import cli
    from tests.fixtures.cluster import free_port

    hook = receivers["hook"]
    hook.fail = hook.hang = 0.0
    b = await _backend(etcd_url, store_prefix)
    port = free_port()
    server, task = await serve_admin(create_admin_app(b.service, b"t", extra_routers=b.admin_routers(b"pepper")),
                                     "127.0.0.1", port)
    env = {"INTERLOCK_ADMIN_URL": f"http://127.0.0.1:{port}", "INTERLOCK_ADMIN_TOKEN": "t"}
    run = CliRunner().invoke
    try:
        await _published(b, (await b.service.apply(policy(receivers))).version)
        res = await asyncio.to_thread(run, cli, ["alerts", "test", "hook"], env=env)
        assert res.exit_code == 0, res.output
        await _until(lambda: any(k.startswith("test:hook:") for k in hook.accepted), 10, "the test event")
        await asyncio.sleep(0.3)
        res = await asyncio.to_thread(run, cli, ["alerts", "-o", "json"], env=env)
        assert res.exit_code == 0, res.output
        rows = orjson.loads(res.output)
        assert any(r["kind"] == "test" and r["destination"] == "hook" and r["status"] == "delivered" for r in rows)
        table = await asyncio.to_thread(run, cli, ["alerts"], env={**env, "COLUMNS": "80"})
        assert "delivered" in table.output and "hook" in table.output
        assert HMAC_KEY not in table.output + res.output
        bad = await asyncio.to_thread(run, cli, ["alerts", "test", "nope"], env=env)
        assert bad.exit_code != 0 and "not in the policy" in bad.output
    finally:
        server.should_exit = True  # type: ignore[attr-defined]
        await task
        await b.close(0)


async def test_node_events_become_alerts_once_per_episode(
        etcd_url: str, store_prefix: str, receivers: dict[str, Receiver]) -> None:
    from dataplane.budget.index import BUDGET, REQUESTS
    from dataplane.control_reporter import TripReporter
    from dataplane.observe.events import EventWatcher

    hook = receivers["hook"]
    hook.fail = hook.hang = 0.0
    b = await _backend(etcd_url, store_prefix)
    reporter = TripReporter(f"127.0.0.1:{b.grpc_port}", "dp-7", None)
    circuits = {"m-a/east": "closed"}
    refused = {(REQUESTS, "team-rpm"): 0, (BUDGET, "team-life"): 0}
    spool = [0]
    w = EventWatcher(circuits=lambda: list(circuits.items()), refused=lambda: dict(refused),
                     spool_bytes=lambda: spool[0], spool_alert_bytes=1000, send=reporter.event)
    try:
        await _published(b, (await b.service.apply(policy(receivers))).version)
        assert w.check() == []
        circuits["m-a/east"] = "open"
        refused[REQUESTS, "team-rpm"] = 3
        refused[BUDGET, "team-life"] = 5  # budget refusals are the thresholds' business, not an event
        spool[0] = 5000
        for _ in range(3):  # the same state seen again: no new episode
            for ev in w.check():
                reporter.event(ev)
        circuits["m-a/east"] = "closed"
        for ev in w.check():
            reporter.event(ev)
        kinds = ("circuit_open", "rate_limit_saturated", "usage_spool_high", "circuit_closed")
        await _until(lambda: all(any(k.startswith(kind + ":dp-7") for k in hook.accepted) for kind in kinds), 15,
                     "every node event at the webhook")
        await asyncio.sleep(0.5)
        assert sorted(k.split(":")[0] for k in hook.accepted) == sorted(kinds), hook.accepted
    finally:
        await reporter.close()
        await b.close(0)


async def test_old_records_are_pruned(etcd_url: str, store_prefix: str, receivers: dict[str, Receiver]) -> None:
    from controlplane.alerts.outbox import FIRED, LOG, DeliveryRecord, log_key

    b = await _backend(etcd_url, store_prefix)
    try:
        alerts = b.alerts
        assert alerts is not None
        now = alerts.now_ms()
        old = DeliveryRecord("x:1", "hook", "test", "info", "old", "delivered", 1, now - 40 * 86_400_000,
                             now - 40 * 86_400_000)
        new = DeliveryRecord("x:2", "hook", "test", "info", "new", "delivered", 1, now, now)
        await b.kv.commit({log_key(old): old.encode(), log_key(new): new.encode(),
                           FIRED + "x%3A1": orjson.dumps({"created_ms": now - 500 * 86_400_000}),
                           FIRED + "x%3A2": orjson.dumps({"created_ms": now - 40 * 86_400_000})})
        assert await alerts.prune() == 2
        assert len((await b.kv.get_prefix(LOG))[0]) == 1 and list((await b.kv.get_prefix(FIRED))[0]) == [
            FIRED + "x%3A2"]  # a 40-day-old decision still dedups this month's thresholds
    finally:
        await b.close(0)
