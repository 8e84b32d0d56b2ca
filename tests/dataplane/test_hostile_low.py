"""The issue's Low findings that live on the request path: ?key= only on Gemini routes, each upstream header
sent once."""

from __future__ import annotations

import aiohttp
import orjson

from controlplane.policy.compiler import compile_snapshot
from controlplane.policy.model import Model, PolicyDocument, Provider
from dataplane.providers.registry import default_providers
from dataplane.snapshot.policy import CompiledPolicy
from tests.fixtures.gateway import Gateway
from tests.fixtures.webapp import serving


async def test_query_key_is_accepted_only_on_gemini_routes(gateway: Gateway, fake_provider) -> None:  # type: ignore[no-untyped-def]
    body = orjson.dumps({"model": "gpt-t", "messages": [{"role": "user", "content": "hi"}]})
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{gateway.url}/v1/chat/completions?key={gateway.key}", data=body) as r:
            assert r.status == 401 and "missing virtual key" in (await r.json())["error"]["message"]
        gem = {"contents": [{"parts": [{"text": "hi"}]}]}
        async with s.post(f"{gateway.url}/v1beta/models/gpt-t:generateContent?key={gateway.key}", json=gem) as r:
            assert r.status == 200, await r.text()
    assert fake_provider.stats()["total"] == 1


def _provider(headers: dict[str, str]) -> CompiledPolicy:
    doc = PolicyDocument(providers=[Provider(name="a", kind="anthropic", base_url="https://x", credential="env:K",
                                             headers=headers)],
                         models=[Model(name="c", provider="a")])
    return CompiledPolicy.from_snapshot(compile_snapshot(doc, [], version=1, now_ms=0), adapters=default_providers(),
                                        credentials=lambda ref: "sk-secret")


def test_anthropic_version_is_sent_once_with_the_clients_value() -> None:
    prov = _provider({}).providers["a"]
    _, headers, _ = prov.adapter.build_request(prov, "messages", "c", False, {"model": "c"},
                                               {"anthropic-version": "2024-01-01", "anthropic-beta": "b1"})
    names = [n.lower() for n, _ in headers]
    assert len(names) == len(set(names))  # no header twice
    assert dict(headers)["anthropic-version"] == "2024-01-01" and dict(headers)["anthropic-beta"] == "b1"
    _, headers, _ = prov.adapter.build_request(prov, "messages", "c", False, {"model": "c"}, {})
    assert dict(headers)["anthropic-version"] == "2023-06-01"


def test_a_header_the_policy_sets_is_not_overridden_by_the_client() -> None:
    prov = _provider({"anthropic-beta": "policy-beta", "x-api-key": "ignored"}).providers["a"]
    _, headers, _ = prov.adapter.build_request(prov, "messages", "c", False, {"model": "c"},
                                               {"anthropic-beta": "client-beta"})
    names = [n.lower() for n, _ in headers]
    assert len(names) == len(set(names))
    assert dict(headers)["anthropic-beta"] == "policy-beta"
    assert dict(headers)["x-api-key"] == "sk-secret"  # the credential wins over a configured header of that name


async def test_fake_provider_admin_is_bound_to_its_token(fake_provider_factory) -> None:  # type: ignore[no-untyped-def]
    from interlock.fakeprovider.config import FakeProviderConfig

    fake = await fake_provider_factory(FakeProviderConfig(admin_token="fake-admin"))
    async with aiohttp.ClientSession() as s:
        for headers in ({}, {"authorization": "Bearer wrong"}):
            async with s.get(f"{fake.base_url}/_fake/stats", headers=headers) as r:
                assert r.status == 401 and "history" not in await r.text()
            async with s.post(f"{fake.base_url}/_fake/faults", json={"status": 529}, headers=headers) as r:
                assert r.status == 401
        async with s.get(f"{fake.base_url}/_fake/stats", headers={"authorization": "Bearer fake-admin"}) as r:
            assert r.status == 200 and "history" in await r.json()
    assert fake.state.faults.snapshot() == []


def test_cli_tables_escape_control_characters() -> None:
    from rich.console import Console

    from interlock.cli import render

    t = render.table("tag", "model")
    render.add_row(t, "a\x1b]52;c;aGk=\x07b", "m\x1b[2J\x9b")
    console = Console(record=True, width=80, color_system=None)
    console.print(t)
    out = console.export_text()
    assert "\x1b" not in out and "\x07" not in out and "\x9b" not in out
    assert "a\\x1b]52;c;aGk=\\x07b" in out and "m\\x1b[2J\\x9b" in out
    assert render.safe("plain tag") == "plain tag"


async def test_an_overlong_model_name_is_refused_not_stored(gateway: Gateway) -> None:
    body = orjson.dumps({"model": "m" * (1 << 20), "messages": [{"role": "user", "content": "hi"}]})
    async with aiohttp.ClientSession() as s, s.post(f"{gateway.url}/v1/chat/completions", data=body,
                                                    headers={"authorization": f"Bearer {gateway.key}"}) as r:
        assert r.status == 400 and "'model' is longer than 256" in (await r.json())["error"]["message"]
    from tests.fixtures.gateway import wait_events

    (ev,) = await wait_events(gateway, 1)
    assert len(ev.requested_model) <= 256


def test_an_sse_event_over_1_mib_reaches_the_client_when_usage_is_stripped() -> None:
    from dataplane.dialects.openai import OpenAIDialect

    big = b'data: {"choices":[{"delta":{"content":"' + b"x" * (3 << 20) + b'"}}]}\n\n'
    usage = b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":7}}\n\n'
    stream = b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n' + big + usage + b"data: [DONE]\n\n"
    scanner = OpenAIDialect().stream_scanner(strip_usage=True)
    out = b"".join(scanner.feed(stream[i:i + 65536]) for i in range(0, len(stream), 65536))
    assert out == stream.replace(usage, b"")  # every byte but the injected usage chunk, in order
    assert (scanner.usage.input_tokens, scanner.usage.output_tokens) == (3, 7)


async def test_an_endless_upstream_body_is_cut_at_the_limit(monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from aiohttp import web

    import dataplane.pipeline.upstream_body
    from tests.fixtures.gateway import gateway_policy, running_gateway, wait_events

    monkeypatch.setattr(dataplane.pipeline.upstream_body, "MAX_UPSTREAM_BODY", 1 << 20)
    sent = 0

    async def endless(request: web.Request) -> web.StreamResponse:
        nonlocal sent
        resp = web.StreamResponse(headers={"content-type": "application/json"})
        await resp.prepare(request)
        try:
            for _ in range(4096):  # up to 256 MB, far more than the limit
                await resp.write(b" " * 65536)
                sent += 65536
        except (ConnectionResetError, RuntimeError):
            pass
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", endless)
    async with serving(app) as base:
        async with running_gateway(base, tmp_path, policy=gateway_policy(base)) as gw, aiohttp.ClientSession() as s:
            body = orjson.dumps({"model": "gpt-t", "messages": [{"role": "user", "content": "hi"}]})
            async with s.post(f"{gw.url}/v1/chat/completions", data=body,
                              headers={"authorization": f"Bearer {gw.key}"}) as r:
                doc = await r.json()
            assert r.status == 502 and "over the 1 MiB limit" in doc["error"]["message"]
            (ev,) = await wait_events(gw, 1)
            assert ev.status == 502
    assert sent < 64 << 20  # the gateway stopped reading long before the end
