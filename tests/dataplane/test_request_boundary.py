"""Hostile request bodies and tags: what is forwarded is what is metered, and no tag escapes its budget.

The upstream here coerces types the way vLLM/pydantic do ("true", 1, "yes" -> True) in front of the fake
provider and records every body it receives: the independent truth for "nothing unmetered went upstream".
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from controlplane.policy.model import Budget, Team
from tests.dataplane.test_budget_dp_routes import GENERATING
from tests.fixtures.gateway import Gateway, gateway_policy, native_gemini, running_gateway, wait_events
from tests.fixtures.webapp import serving

_TRUTHY = {"true", "1", "yes", "on", "t", "y"}


def coerce_bool(v: Any) -> Any:
    if isinstance(v, str):
        return v.lower() in _TRUTHY
    if isinstance(v, (int, float)):
        return bool(v)
    return v


class CoercingUpstream:
    def __init__(self, target: str):
        self.target = target
        self.received: list[dict[str, Any]] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        self.received.append(body)
        if "stream" in body:
            body["stream"] = coerce_bool(body["stream"])
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with aiohttp.ClientSession() as s, s.post(self.target + request.path_qs, data=orjson.dumps(body),
                                                        headers=headers) as r:
            out = web.StreamResponse(status=r.status, headers={"content-type": r.headers["content-type"]})
            await out.prepare(request)
            async for chunk in r.content.iter_any():
                await out.write(chunk)
            await out.write_eof()
            return out


@pytest.fixture
async def coercing(fake_provider) -> AsyncIterator[tuple[str, CoercingUpstream]]:  # type: ignore[no-untyped-def]
    up = CoercingUpstream(fake_provider.base_url)
    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", up.handle)
    async with serving(app) as base:
        yield base, up


@pytest.fixture
async def coerced_gateway(coercing, tmp_path: Path) -> AsyncIterator[Gateway]:  # type: ignore[no-untyped-def]
    base, _ = coercing
    async with running_gateway(base, tmp_path) as gw:
        yield gw


NON_BOOLEAN_STREAM = ["true", "True", "1", "yes", "on", 1, 0, 1.0, "false", "", [], {}, [True], {"enabled": True}]
STREAMING_ROUTES: dict[str, tuple[dict[str, Any], str]] = {  # route -> (body, header for the key)
    "/v1/chat/completions": ({"model": "gpt-t", "messages": [{"role": "user", "content": "hi"}]}, "authorization"),
    "/v1/responses": ({"model": "gpt-t", "input": "hi"}, "authorization"),
    "/v1/messages": ({"model": "claude-t", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]},
                     "x-api-key"),
}


def _headers(gw: Gateway, how: str) -> dict[str, str]:
    return {"authorization": f"Bearer {gw.key}"} if how == "authorization" else {
        "x-api-key": gw.key, "anthropic-version": "2023-06-01"}


def _error_message(family: str, doc: dict[str, Any]) -> str:
    assert doc["error"]["type"] == "invalid_request_error" if family == "openai" else doc["type"] == "error"
    return str(doc["error"]["message"])


async def test_every_non_boolean_stream_is_refused_before_the_upstream(coerced_gateway: Gateway, coercing) -> None:  # type: ignore[no-untyped-def]
    gw, (_, upstream) = coerced_gateway, coercing
    async with aiohttp.ClientSession() as s:
        for path, (body, how) in STREAMING_ROUTES.items():
            family = "anthropic" if how == "x-api-key" else "openai"
            for form in NON_BOOLEAN_STREAM:
                async with s.post(gw.url + path, data=orjson.dumps({**body, "stream": form}),
                                  headers=_headers(gw, how)) as r:
                    doc = await r.json(content_type=None)
                assert r.status == 400, (path, form, doc)
                assert "'stream' must be a boolean (true or false)" in _error_message(family, doc), (path, doc)
    assert upstream.received == []  # nothing that could be streamed unmetered went upstream
    events = await wait_events(gw, len(STREAMING_ROUTES) * len(NON_BOOLEAN_STREAM))
    assert {e.status for e in events} == {400} and all(e.output_tokens == 0 for e in events)


async def test_boolean_stream_switches_are_metered_exactly(coerced_gateway: Gateway, coercing) -> None:  # type: ignore[no-untyped-def]
    gw, (_, upstream) = coerced_gateway, coercing
    async with aiohttp.ClientSession() as s:
        for path, (body, how) in STREAMING_ROUTES.items():
            for flag in (True, False):
                async with s.post(gw.url + path, data=orjson.dumps({**body, "stream": flag}),
                                  headers=_headers(gw, how)) as r:
                    text = await r.read()
                assert r.status == 200, text
                assert (b"data:" in text) is flag and r.headers["content-type"].startswith(
                    "text/event-stream" if flag else "application/json")
    events = await wait_events(gw, 6)
    assert [e.stream for e in events] == [True, False] * 3
    assert all(e.output_tokens == 20 and e.input_tokens > 0 and e.cost_usd != "0.000000000000" for e in events)
    assert [b["stream"] for b in upstream.received] == [True, False] * 3  # forwarded = metered


async def test_gemini_streaming_switch_is_the_url_and_typed_fields_are_checked(coercing, fake_provider, tmp_path) -> None:  # type: ignore[no-untyped-def]
    base, upstream = coercing
    doc = gateway_policy(base, providers=[native_gemini(base)])
    doc = doc.model_copy(update={"models": [*doc.models, doc.models[0].model_copy(update={
        "name": "gem-t", "provider": "fg", "upstream": "gemini-upstream"})]})
    body = {"contents": [{"parts": [{"text": "hi"}]}]}
    async with running_gateway(base, tmp_path, policy=doc) as gw, aiohttp.ClientSession() as s:
        h = {"x-goog-api-key": gw.key}
        async with s.post(f"{gw.url}/v1beta/models/gem-t:streamGenerateContent", json=body, headers=h) as r:
            assert r.status == 400 and "alt=sse" in (await r.json())["error"]["message"]
        bad = {**body, "generationConfig": {"maxOutputTokens": "100000"}}
        async with s.post(f"{gw.url}/v1beta/models/gem-t:generateContent", json=bad, headers=h) as r:
            doc_ = await r.json()
            assert r.status == 400 and doc_["error"]["status"] == "INVALID_ARGUMENT"
            assert "generationConfig.'maxOutputTokens' must be an integer" in doc_["error"]["message"]
        assert upstream.received == []
        async with s.post(f"{gw.url}/v1beta/models/gem-t:streamGenerateContent?alt=sse", json=body, headers=h) as r:
            assert r.status == 200 and b"data:" in await r.read()
        ev = (await wait_events(gw, 2))[-1]  # the alt=sse refusal is the router's, before metering
        assert ev.stream and ev.output_tokens == 20


@pytest.mark.parametrize(("field", "value", "path"), [
    ("max_tokens", "100000", "/v1/chat/completions"),
    ("max_completion_tokens", True, "/v1/chat/completions"),
    ("model", ["gpt-t"], "/v1/chat/completions"),
    ("max_output_tokens", 5.5, "/v1/responses"),
    ("max_tokens", "50", "/v1/messages"),
    ("messages", "hi", "/v1/messages"),
])
async def test_typed_fields_that_steer_budgets_must_have_their_type(coerced_gateway: Gateway, coercing, field: str,
                                                                     value: Any, path: str) -> None:  # type: ignore[no-untyped-def]
    gw, (_, upstream) = coerced_gateway, coercing
    body, how = STREAMING_ROUTES[path]
    async with aiohttp.ClientSession() as s, s.post(gw.url + path, data=orjson.dumps({**body, field: value}),
                                                    headers=_headers(gw, how)) as r:
        doc = await r.json(content_type=None)
    assert r.status == 400 and f"{field!r} must be" in _error_message("anthropic" if how == "x-api-key" else "openai", doc)
    assert upstream.received == []


async def test_deep_nesting_is_a_400_not_a_500(gateway: Gateway, fake_provider) -> None:  # type: ignore[no-untyped-def]
    deep = b"[" * 300 + b'"x"' + b"]" * 300  # orjson parses it (limit 1,024) but could not serialise it (254)
    async with aiohttp.ClientSession() as s:
        body: dict[str, Any] = {"model": "gpt-t", "messages": [{"role": "user", "content": "hi"}]}
        raw = orjson.dumps(body)[:-1] + b',"metadata":{"d":' + deep + b"}}"
        async with s.post(f"{gateway.url}/v1/chat/completions", data=raw,
                          headers={"authorization": f"Bearer {gateway.key}"}) as r:
            doc = await r.json()
        assert r.status == 400 and "JSON nested too deeply" in doc["error"]["message"]
        shallow: Any = "x"
        for _ in range(100):
            shallow = {"a": shallow}
        body["tools"] = []
        body["metadata"] = {}
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "n", "schema": shallow}}
        async with s.post(f"{gateway.url}/v1/chat/completions", data=orjson.dumps(body),
                          headers={"authorization": f"Bearer {gateway.key}"}) as r:
            assert r.status == 200, await r.text()
    assert fake_provider.stats()["total"] == 1


# --- tags: team default env=prod is authoritative; a tag budget on env=prod cannot be escaped


def _tagged_policy(base: str, overridable: list[str]) -> Any:
    doc = gateway_policy(base, providers=[native_gemini(base)])
    return doc.model_copy(update={
        "teams": [Team(id="eng", default_tags={"cost-center": "42", "env": "prod"}, overridable_tags=overridable)],
        "budgets": [Budget(id="prod", scope="tag", scope_id="env=prod", window="month", limit_usd="0.000000000001")],
    })


def _escape_attempts(path: str, body: dict[str, Any], family: str) -> list[tuple[dict[str, str], dict[str, Any]]]:
    """(extra headers, body) pairs that each try to re-label the request env=dev."""
    attempts: list[tuple[dict[str, str], dict[str, Any]]] = [({"x-interlock-tags": "env=dev"}, body)]
    if family == "gemini":
        attempts.append(({}, {**body, "labels": {"env": "dev"}}))
    elif path != "/v1/embeddings":
        attempts.append(({}, {**body, "metadata": {"env": "dev"}}))  # OpenAI and Anthropic metadata
    return attempts


@pytest.mark.parametrize("path", list(GENERATING))
async def test_a_tag_budget_cannot_be_escaped_on_any_route(path: str, fake_provider, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    body, family = GENERATING[path]
    async with running_gateway(fake_provider.base_url, tmp_path, policy=_tagged_policy(fake_provider.base_url, [])) as gw, \
            aiohttp.ClientSession() as s:
        for extra, sent in _escape_attempts(path, body, family):
            headers = {"authorization": f"Bearer {gw.key}", "anthropic-version": "2023-06-01", **extra}
            async with s.post(gw.url + path, data=orjson.dumps(sent), headers=headers) as r:
                text = await r.text()
            if extra:  # an explicit override of a policy tag is refused, naming the rule
                assert r.status == 400 and "tag 'env' is set by policy" in text, text
            else:  # metadata/labels are the SDK's: ignored for policy tags, so the env=prod budget applies
                assert r.status == 402 and "budget 'prod'" in text, text
        events = await wait_events(gw, len(_escape_attempts(path, body, family)))
        assert all(e.tags["env"] == "prod" for e in events)
    assert fake_provider.stats()["total"] == 0


async def test_a_policy_can_let_clients_override_a_default_tag(fake_provider, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    policy = _tagged_policy(fake_provider.base_url, ["env"])
    body, _ = GENERATING["/v1/chat/completions"]
    async with running_gateway(fake_provider.base_url, tmp_path, policy=policy) as gw, aiohttp.ClientSession() as s:
        async with s.post(gw.url + "/v1/chat/completions", data=orjson.dumps(body),
                          headers={"authorization": f"Bearer {gw.key}", "x-interlock-tags": "env=dev,extra=1"}) as r:
            assert r.status == 200
        (ev,) = await wait_events(gw, 1)
        assert ev.tags["env"] == "dev" and ev.tags["extra"] == "1" and ev.tags["cost-center"] == "42"


async def test_tag_values_with_control_characters_are_refused_or_dropped(gateway: Gateway) -> None:
    body, _ = GENERATING["/v1/chat/completions"]
    raw = orjson.dumps({**body, "metadata": {"shown": "a\x1b]52;c;aGk=\x07b", "fine": "ok"}})
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.node.port)  # aiohttp refuses to send it
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer %s\r\n"
                 b"x-interlock-tags: t=a\x1b[2Jb\r\ncontent-length: %d\r\n\r\n%s" % (gateway.key.encode(), len(raw), raw))
    head = await reader.readuntil(b"\r\n\r\n")
    writer.close()
    assert head.startswith(b"HTTP/1.1 400")  # refused by the HTTP parser or tags.py, never recorded as sent
    async with aiohttp.ClientSession() as s, s.post(gateway.url + "/v1/chat/completions", data=raw,
                                                    headers={"authorization": f"Bearer {gateway.key}"}) as r:
        assert r.status == 200
    events = await wait_events(gateway, 1)
    assert events[-1].tags["fine"] == "ok" and "shown" not in events[-1].tags  # SDK metadata: dropped, not mangled
