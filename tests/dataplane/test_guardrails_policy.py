"""Guardrail policy semantics through a real data-plane node in front of the fake provider: attachment to a
routing rule, fail modes (a detector that errors or runs out of time) and sampling. Truth is what the fake
provider received, what the client got, and the usage events."""

from __future__ import annotations

import itertools
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from controlplane.policy.guardrails import Guardrail
from controlplane.policy.routing_model import RoutingRule, RuleMatch
from dataplane.guardrails.engine import Scanner
from tests.fixtures.gateway import Gateway, gateway_policy, running_gateway, wait_events

AWS_ID = "AKIAQ7ZL3XK5PW2MN4RT"
LANE = "x-lane"


def chat(content: str) -> bytes:
    return orjson.dumps({"model": "gpt-t", "messages": [{"role": "user", "content": content}]})


def anthropic(content: str) -> bytes:
    return orjson.dumps({"model": "claude-t", "max_tokens": 20, "messages": [{"role": "user", "content": content}]})


@asynccontextmanager
async def node(fake_provider, tmp_path: Path, routes: list[RoutingRule] | None = None,  # type: ignore[no-untyped-def]
               **guardrail: Any) -> AsyncIterator[Gateway]:
    doc = gateway_policy(fake_provider.base_url)
    g = Guardrail.model_validate({"id": "no-secrets", "detect": ["secrets"], "action": "redact", **guardrail})
    doc = doc.model_copy(update={"guardrails": [g], "routes": routes or []})
    async with running_gateway(fake_provider.base_url, tmp_path, policy=doc) as gw:
        yield gw


def received(fake_provider) -> str:  # type: ignore[no-untyped-def]
    return orjson.dumps(fake_provider.last_request).decode()


async def test_a_guardrail_on_a_routing_rule_scans_only_the_requests_that_rule_routes(fake_provider,  # type: ignore[no-untyped-def]
                                                                                    tmp_path: Path) -> None:
    routes = [RoutingRule(id="secure-lane", match=RuleMatch(headers={LANE: "secure"}))]
    async with node(fake_provider, tmp_path, routes, attach={"routing_rules": ["secure-lane"]}) as gw, \
            aiohttp.ClientSession() as s:
        auth = {"authorization": f"Bearer {gw.key}"}
        r = await s.post(gw.url + "/v1/chat/completions", data=chat(f"deploy {AWS_ID}"), headers={**auth, LANE: "secure"})
        assert r.status == 200, await r.text()
        assert AWS_ID not in received(fake_provider) and "[REDACTED:aws-access-key-id]" in received(fake_provider)
        for lane in ("other", None):  # another header value, or none: no rule matches, the guardrail does not run
            headers = {**auth, LANE: lane} if lane else auth
            r = await s.post(gw.url + "/v1/chat/completions", data=chat(f"deploy {AWS_ID}"), headers=headers)
            assert r.status == 200, await r.text()
            assert AWS_ID in received(fake_provider)
        events = await wait_events(gw, 3)
    assert [e.route_rule for e in events] == ["secure-lane", "default", "default"]
    outcomes = [orjson.loads(e.guardrail_outcome) if e.guardrail_outcome else [] for e in events]
    assert outcomes[0][0]["id"] == "no-secrets" and outcomes[0][0]["rules"] == {"aws-access-key-id": 1}
    assert outcomes[1:] == [[], []]


def _broken_scan(self: Scanner, text: str, *args: Any, **kwargs: Any) -> list[Any]:
    raise RuntimeError("detector crashed")


@pytest.mark.parametrize("failure", ["error", "timeout"])
async def test_fail_closed_refuses_in_the_clients_dialect(fake_provider, tmp_path: Path, failure: str,  # type: ignore[no-untyped-def]
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    async with node(fake_provider, tmp_path, fail_mode="closed") as gw, aiohttp.ClientSession() as s:
        if failure == "error":
            monkeypatch.setattr(Scanner, "scan", _broken_scan)
        else:  # every clock reading is a second later: the first candidate is already past the scan's budget
            ticks = itertools.count()
            gw.node.guardrails.clock = lambda: float(next(ticks))
        before = fake_provider.stats()["total"]
        r = await s.post(gw.url + "/v1/messages", data=anthropic(f"deploy {AWS_ID}"),
                         headers={"x-api-key": gw.key, "anthropic-version": "2023-06-01"})
        text = await r.text()
        assert r.status == 503, text
        err = orjson.loads(text)
        assert err["type"] == "error" and err["error"]["type"] == "api_error"
        assert "no-secrets" in err["error"]["message"] and "fail closed" in err["error"]["message"]
        assert AWS_ID not in text
        r = await s.post(gw.url + "/v1/chat/completions", data=chat(f"deploy {AWS_ID}"),
                         headers={"authorization": f"Bearer {gw.key}"})
        err = orjson.loads(await r.text())
        assert r.status == 503 and err["error"]["type"] == "api_error" and "no-secrets" in err["error"]["message"]
        assert fake_provider.stats()["total"] == before  # nothing reached the provider
        events = await wait_events(gw, 2)
    expected = "RuntimeError" if failure == "error" else "ScanTimeout"
    for ev in events:
        assert ev.status == 503
        (o,) = orjson.loads(ev.guardrail_outcome)
        assert (o["id"], o["action"], o["error"], o["fail"]) == ("no-secrets", "error", expected, "closed")


@pytest.mark.parametrize("failure", ["error", "timeout"])
async def test_fail_open_forwards_and_records_the_failure(fake_provider, tmp_path: Path, failure: str,  # type: ignore[no-untyped-def]
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    async with node(fake_provider, tmp_path, fail_mode="open") as gw, aiohttp.ClientSession() as s:
        if failure == "error":
            monkeypatch.setattr(Scanner, "scan", _broken_scan)
        else:
            ticks = itertools.count()
            gw.node.guardrails.clock = lambda: float(next(ticks))
        r = await s.post(gw.url + "/v1/chat/completions", data=chat(f"deploy {AWS_ID}"),
                         headers={"authorization": f"Bearer {gw.key}"})
        assert r.status == 200, await r.text()
        assert AWS_ID in received(fake_provider)  # forwarded as sent: the check could not run
        (ev,) = await wait_events(gw, 1)
        metrics = await (await s.get(gw.url + "/metrics")).text()
    assert ev.status == 200 and ev.output_tokens > 0
    (o,) = orjson.loads(ev.guardrail_outcome)
    assert (o["action"], o["fail"], o["error"]) == ("error", "open", "RuntimeError" if failure == "error" else "ScanTimeout")
    assert 'interlock_guardrail_outcomes_total{guardrail="no-secrets",direction="input",action="error"} 1' in metrics


def documented_sample(guardrail_id: str, request_id: str, percent: int) -> bool:
    """docs/guardrails.md: a request is in the sample when crc32("<guardrail id>:<request id>") % 100 < percent."""
    return zlib.crc32(f"{guardrail_id}:{request_id}".encode()) % 100 < percent


async def test_sampling_is_deterministic_per_request_id_and_close_to_the_percent(fake_provider,  # type: ignore[no-untyped-def]
                                                                               tmp_path: Path) -> None:
    n, percent = 240, 30
    async with node(fake_provider, tmp_path, sampling=percent) as gw, aiohttp.ClientSession() as s:
        redacted: list[bool] = []
        for _ in range(n):
            r = await s.post(gw.url + "/v1/chat/completions", data=chat(f"deploy {AWS_ID}"),
                             headers={"authorization": f"Bearer {gw.key}"})
            assert r.status == 200
            redacted.append(AWS_ID not in received(fake_provider))
        events = await wait_events(gw, n)
    scanned = [bool(e.guardrail_outcome) for e in events]
    assert scanned == redacted  # an outcome is recorded exactly when the provider got the redacted text
    # the decision is the documented function of the request id: the same id always gets the same answer
    assert scanned == [documented_sample("no-secrets", e.event_id, percent) for e in events]
    assert len({e.event_id for e in events}) == n
    share = sum(scanned) / n
    assert 0.2 <= share <= 0.4, share  # 30% +- 3.5 standard deviations of a binomial(240, 0.3)
