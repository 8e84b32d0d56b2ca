"""Runaway-loop breaker: an agent scripted to repeat the same failing tool step is paused on a 3-node cluster
(every node refuses it in the client's dialect, and the fake provider stops receiving its requests), and
`interlock keys resume` restores it, audited. Plus the detectors and the signature on their own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx

from dataplane.loopguard.guard import LoopGuard, Trip
from dataplane.loopguard.index import Breaker
from dataplane.loopguard.signature import signature
from tests.fixtures.cluster import ADMIN_TOKEN, Cluster, wait_until

N = 6  # identical steps before the pause


def _tool_step(i: int) -> list[dict[str, Any]]:
    """One iteration of a stuck agent: the same tool call (a fresh call id each time) and the same error."""
    call_id = f"call_{uuid.uuid4().hex[:8]}"
    return [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": "run_tests", "arguments": '{"path": "."}'}}]},
        {"role": "tool", "tool_call_id": call_id, "content": "FAILED tests/test_app.py::test_login - KeyError: 'id'"},
    ]


def test_signature_ignores_call_ids_and_history_growth() -> None:
    base = [{"role": "user", "content": "fix the login test"}]
    a = signature("m", {"messages": base + _tool_step(1)})
    b = signature("m", {"messages": base + _tool_step(1) + _tool_step(2)})  # the conversation grew
    assert a == b is not None
    c = signature("m", {"messages": [*base, {"role": "user", "content": "now add a test"}]})
    assert c is None  # no tool result at the end: a plain prompt (batch jobs repeat those) never counts
    assert signature("other-model", {"messages": base + _tool_step(1)}) != a
    assert signature("m", {"input": "embed me"}) is None
    anthropic = [{"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "bash",
                                                    "input": {"cmd": "pytest"}}]},
                 {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "FAILED"}]}]
    again = [{**anthropic[0], "content": [{**anthropic[0]["content"][0], "id": "toolu_2"}]},
             {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_2", "content": "FAILED"}]}]
    assert signature("c", {"messages": anthropic}) == signature("c", {"messages": [*anthropic, *again]}) is not None


def test_guard_identical_and_velocity() -> None:
    now = [1000.0]
    trips: list[Trip] = []
    g = LoopGuard(clock=lambda: now[0], report=trips.append)
    br = Breaker("b", 3, 60.0, 0, 60.0, "pause")
    for _ in range(2):
        g.request("k1", br, b"s1")
        now[0] += 1
    g.request("k1", br, b"s2")  # a different step does not count
    assert not trips and not g.local_pause("k1", False)
    g.request("k1", br, b"s1")
    assert len(trips) == 1 and "3 near-identical" in trips[0].reason
    assert g.local_pause("k1", False)
    assert not g.local_pause("k1", True)  # the policy has it: the local pause is dropped
    # outside the window the old ones are forgotten
    now[0] += 120
    g.request("k2", br, b"s1")
    now[0] += 61
    g.request("k2", br, b"s1")
    g.request("k2", br, b"s1")
    assert len(trips) == 1
    vel = Breaker("v", 0, 60.0, 10**12, 60.0, "alert")  # $1/min
    for _ in range(5):
        g.spent("k3", vel, 3 * 10**11)  # $0.30 each
    assert len(trips) == 2 and trips[-1].breaker.action == "alert" and not g.local_pause("k3", False)


def _cli(c: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "INTERLOCK_ADMIN_URL": c.admin_url, "INTERLOCK_ADMIN_TOKEN": ADMIN_TOKEN,
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return subprocess.run([sys.executable, "-c", "from interlock.cli.main import main; main()", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def test_stuck_agent_paused_on_every_node_and_resumed(cluster_factory: Any) -> None:
    c: Cluster = cluster_factory(nodes=3)
    doc = c.policy()
    doc["loop_breakers"] = [{"id": "stuck-agent", "scope": "team", "scope_id": "eng", "identical_requests": N,
                             "identical_window_s": 300, "action": "pause"}]
    c.apply(doc)
    created = c.create_key(team="eng")
    key, key_id = created["secret"], created["id"]
    c.wait_in_sync()
    auth = {"Authorization": f"Bearer {key}"}
    fake = httpx.get(f"{c.fake_url}/_fake/stats").json()["total"]
    messages: list[dict[str, Any]] = [{"role": "user", "content": "make the login test pass"}]
    sent = served = 0
    refused: httpx.Response | None = None
    with httpx.Client(timeout=10) as http:
        # the agent talks to one node over keep-alive, as a client behind a load balancer with sticky
        # connections would; detection is local to each node
        node = c.nodes[0]
        for i in range(3 * N):
            messages += _tool_step(i)
            r = http.post(f"{node.openai_base}/chat/completions", headers=auth,
                          json={"model": "m-a", "messages": messages, "max_tokens": 8})
            sent += 1
            if r.status_code == 429:
                refused = r
                break
            assert r.status_code == 200, r.text
            served += 1
        assert refused is not None, f"never paused after {sent} identical steps"
        assert served == N - 1 and sent == N  # the N-th identical step is refused, nothing after it is sent
        err = refused.json()["error"]
        assert "paused by the runaway-loop breaker" in err["message"] and f"interlock keys resume {key_id}" in \
            err["message"]
        # the provider saw only what was served (independent of the gateway's own accounting)
        assert httpx.get(f"{c.fake_url}/_fake/stats").json()["total"] - fake == served

        # the pause reaches every node through the policy: a fresh conversation is refused everywhere, in the
        # client's own dialect
        def everywhere_refused() -> bool:
            return all(http.post(f"{n.openai_base}/chat/completions", headers=auth, json={
                "model": "m-a", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}).status_code == 429
                for n in c.nodes)

        wait_until(everywhere_refused, 10, "the pause on every node")
        a = http.post(f"{c.nodes[2].url}/v1/messages", headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
                      json={"model": "claude-e2e", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]})
        assert a.status_code == 429 and a.json()["type"] == "error" and "resume" in a.json()["error"]["message"]
        listed = _cli(c, "keys", "list")
        assert "paused" in listed.stdout, listed.stdout + listed.stderr

        res = _cli(c, "keys", "resume", key_id)
        assert res.returncode == 0, res.stdout + res.stderr
        assert "resumed" in res.stdout

        def everywhere_served() -> bool:
            return all(http.post(f"{n.openai_base}/chat/completions", headers=auth, json={
                "model": "m-a", "messages": [{"role": "user", "content": "a new task"}], "max_tokens": 8}).status_code
                == 200 for n in c.nodes)

        wait_until(everywhere_served, 10, "the key served again on every node")
    audit = _cli(c, "audit", "policy", "-o", "json")
    records = [r for r in json.loads(audit.stdout)["records"] if r["action"] in ("pause_key", "resume_key")]
    actions = {(r["action"], r["actor"]) for r in records}
    assert ("pause_key", f"loop-breaker@{c.nodes[0].node_id}") in {(a, b.split(" ")[0]) for a, b in actions}, records
    assert any(a == "resume_key" for a, _ in actions), records


async def test_trip_revokes_run_keys_pauses_others_and_alerts(etcd_url: str, store_prefix: str) -> None:
    import grpc

    from controlplane.backend import start_backend
    from controlplane.budget.runkeys import RunKeySpec
    from controlplane.policy.model import PolicyDocument
    from controlplane.service_types import KeySpec
    from interlock_contracts.settings.controlplane import ControlPlaneSettings
    from interlock_contracts.v1 import loop_pb2, loop_pb2_grpc

    s = ControlPlaneSettings(key_pepper=b"pepper", admin_token=b"t", store=etcd_url, etcd_prefix=store_prefix,
                             grpc_port=0)
    b = await start_backend(s)
    try:
        await b.service.apply(PolicyDocument.model_validate({
            "providers": [{"name": "p", "base_url": "http://127.0.0.1:9"}],
            "models": [{"name": "m", "provider": "p", "price": {"input": "1", "output": "2"}}],
            "teams": [{"id": "t1"}]}))
        parent = (await b.service.create_key(KeySpec(team="t1"))).record
        run = (await b.service.mint_run_key(RunKeySpec(parent=parent.id, ttl_ms=3_600_000))).record
        async with grpc.aio.insecure_channel(f"127.0.0.1:{b.grpc_port}") as ch:
            stub = loop_pb2_grpc.LoopServiceStub(ch)
            ack = await stub.Trip(loop_pb2.LoopTrip(node_id="dp-1", key_id=run.id, breaker_id="x", action="revoke",
                                                    reason="stuck"))
            assert ack.applied
            ack = await stub.Trip(loop_pb2.LoopTrip(node_id="dp-1", key_id=parent.id, breaker_id="x",
                                                    action="revoke", reason="stuck"))
            assert ack.applied  # not a run key: paused, never revoked
            again = await stub.Trip(loop_pb2.LoopTrip(node_id="dp-2", key_id=parent.id, breaker_id="x",
                                                      action="pause", reason="stuck"))
            assert not again.applied  # already paused: one audit record, one alert
            try:
                await stub.Trip(loop_pb2.LoopTrip(node_id="dp-1", key_id="vk_nope", action="pause"))
                raise AssertionError("an unknown key must be refused")
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.NOT_FOUND
        keys = {k.id: k for k in await b.service.list_keys()}
        assert keys[run.id].revoked and not keys[run.id].paused
        assert keys[parent.id].paused and not keys[parent.id].revoked and keys[parent.id].paused_reason == "stuck"
        snap = await b.service.current_snapshot()
        assert {k.id: k.paused for k in snap.keys}[parent.id]
        log = await b.service.policy_log()
        assert [r.action for r in log].count("pause_key") == 1
    finally:
        await b.close(0)
