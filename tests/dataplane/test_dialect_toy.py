"""Adding a dialect is one module plus one registry line: a toy client API, defined only here, is served end to
end by a real in-process gateway in front of the fake provider.

The toy API has its own endpoint (POST /toy/v1/ask), request shape ({"use", "say", "flow", "cap"}), answer
shape ({"answer", "spent"}), stream framing (`piece {...}` / `end {...}` blocks, not SSE `data:` lines),
error shape ({"oops": {...}}), rate-limit headers and model list (GET /toy/models). The fake provider only
speaks the real APIs, so the toy module also brings its translators (Dialect.translators): to OpenAI chat, and
through it to Anthropic messages. The one registry line is `{**default_dialects(), "toy": ToyDialect()}`;
nothing in dataplane/ names the toy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from controlplane.policy.compiler import compile_snapshot
from controlplane.policy.model import KeyRecord, Model, PolicyDocument, Price, RateLimit
from dataplane.dialects.base import ClientAPI, ClientTranslator, EndpointSpec, Event, Models, Usage
from dataplane.dialects.registry import default_dialects
from dataplane.dialects.sse import SSEScanner
from dataplane.node import DataPlaneNode
from dataplane.snapshot import file as snapshot_file
from dataplane.translate.base import ChatStreamTranslator, Params, Session, StatelessSession
from dataplane.translate.chain import Chained
from dataplane.translate.openai_to_anthropic import OpenAIToAnthropic
from dataplane.usage.sink import MemorySink
from interlock_contracts.keys import hash_key, new_secret
from interlock_contracts.settings.dataplane import DataPlaneSettings
from tests.fixtures.gateway import PEPPER, gateway_policy

# ---- the toy dialect module ------------------------------------------------------------------------------


class ToyDialect(ClientAPI):
    name = family = "toy"
    models_paths: tuple[str, ...] = ("/toy/models",)

    def endpoints(self) -> Sequence[EndpointSpec]:
        return (EndpointSpec("POST", "/toy/v1/ask", "ask"),)

    def claims(self, path: str, headers: Mapping[str, str] | None, query: str) -> bool:
        return path.startswith("/toy/")

    def requested_model(self, path: str, body: dict[str, Any]) -> str | None:
        use = body.get("use")
        return use if isinstance(use, str) and use else None

    def wants_stream(self, path: str, body: dict[str, Any]) -> bool:
        return body.get("flow") is True

    def error_body(self, status: int, kind: str, message: str) -> bytes:
        return orjson.dumps({"oops": {"why": kind, "text": message}})

    def stream_error_event(self, kind: str, message: str) -> bytes:
        return b"oops " + self.error_body(0, kind, message) + b"\n\n"

    def write_events(self, events: list[Event]) -> bytes:
        return b"".join(b"%s %s\n\n" % ((n or "piece").encode(), orjson.dumps(d)) for n, d in events)

    def model_entry(self, name: str, owner: str) -> dict[str, Any]:
        return {"toy": name, "maker": owner}

    def model_list(self, models: Models) -> bytes:
        return orjson.dumps({"toys": [self.model_entry(n, o) for n, o in models]})

    def rate_limit_headers(self, dim: str, limit: int, remaining: int, reset_ms: int,
                           wait_s: float) -> list[tuple[str, str]]:
        return [(f"toy-{dim}-left", str(max(0, remaining))), (f"toy-{dim}-cap", str(limit))]

    def usage_from_body(self, body: dict[str, Any]) -> Usage:
        spent = body.get("spent") or {}
        return Usage(input_tokens=spent.get("in", 0), output_tokens=spent.get("out", 0), reported=bool(spent))

    def stream_scanner(self, strip_usage: bool = False) -> SSEScanner:
        raise AssertionError("no provider speaks toy: its streams are always translated")

    def max_output_tokens(self, body: dict[str, Any]) -> int | None:
        cap = body.get("cap")
        return cap if isinstance(cap, int) else None

    def translators(self) -> Sequence[ClientTranslator]:
        # to OpenAI chat providers, and through OpenAI chat to Anthropic ones: each rule written once
        return (ToyToOpenAI(), Chained(ToyToOpenAI(), OpenAIToAnthropic()))


def _toy_request(body: dict[str, Any], p: Params) -> dict[str, Any]:
    out: dict[str, Any] = {"model": p.upstream_model or body["use"],
                           "messages": [{"role": "user", "content": str(body.get("say", ""))}]}
    if isinstance(body.get("cap"), int):
        out["max_tokens"] = body["cap"]
    if p.stream:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return out


def _spent(u: Any) -> dict[str, int]:
    u = u if isinstance(u, dict) else {}
    return {"in": u.get("prompt_tokens", 0), "out": u.get("completion_tokens", 0)}


def _toy_response(body: dict[str, Any], p: Params) -> dict[str, Any]:
    return {"answer": body["choices"][0]["message"]["content"], "by": p.client_model, "spent": _spent(body.get("usage"))}


class ChatToToyStream(ChatStreamTranslator):
    __slots__ = ()

    def __init__(self, p: Params) -> None:
        self._done, self._finish, self._usage, self._usage_final = False, None, None, False

    def _text(self, text: str) -> list[Event]:
        return [("piece", {"t": text})]

    def _tool(self, tc: dict[str, Any]) -> list[Event]:
        return []

    def _error_event(self, message: str) -> Event:
        return ("oops", {"oops": {"why": "upstream_error", "text": message}})

    def _close(self) -> list[Event]:
        self._done = True
        return [("end", {"spent": _spent(self._usage), "stop": self._finish})]


class ToyToOpenAI:
    client = "toy"
    client_operation = "ask"
    provider = "openai"
    operation = "chat"

    def open(self, params: Params) -> Session:
        return StatelessSession(params, _toy_request, _toy_response, ChatToToyStream)


# ---- the registry line (what a dialect author adds to default_dialects() in dataplane/dialects/registry.py) ----


def toy_registry() -> dict[str, Any]:
    return {**default_dialects(), "toy": ToyDialect()}


# ---- served end to end ----------------------------------------------------------------------------------


def _blocks(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in raw.split(b"\n\n"):
        if block:
            name, _, data = block.partition(b" ")
            out.append((name.decode(), orjson.loads(data)))
    return out


async def _events(sink: MemorySink, n: int) -> None:
    for _ in range(200):  # a node emits the event after the response is sent
        if len(sink.events) >= n:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"expected {n} usage events, got {len(sink.events)}")


@pytest.fixture
async def toy_gateway(fake_provider, tmp_path: Path):  # type: ignore[no-untyped-def]
    secret = new_secret()
    key = KeyRecord(id="vk_toy", key_hash=hash_key(PEPPER, secret).hex(), team="eng")
    base = gateway_policy(fake_provider.base_url, models=[Model(name="limited-t", provider="fo", price=Price(input="1"))])
    # a rate limit this node (offline: no control plane to lease from) cannot grant: refused in the toy's shape
    doc = PolicyDocument(**{**base.model_dump(), "rate_limits": [
        RateLimit(id="rl_toy", scope="key", scope_id="vk_toy", models=["limited-t"], requests_per_minute=2)]})
    snapshot_file.save(tmp_path / "snapshot.pb", compile_snapshot(doc, [key], version=3, now_ms=0))
    settings = DataPlaneSettings(node_id="toy-node", key_pepper=PEPPER, port=0, control_plane="", state_dir=tmp_path,
                                 tune_gc=False)
    node = DataPlaneNode(settings, sink=MemorySink(), env={"FAKE_KEY": "fake-secret"}, dialects=toy_registry())
    await node.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.port}",
                                     headers={"authorization": f"Bearer {secret}"}, timeout=10) as client:
            yield client, node
    finally:
        await node.stop()


async def test_toy_dialect_answers_streams_lists_and_errs_in_its_own_shapes(toy_gateway, fake_provider) -> None:
    client, node = toy_gateway
    # a whole answer: the provider got an OpenAI chat request, the client the toy shape
    r = await client.post("/toy/v1/ask", json={"use": "fast", "say": "hello toy", "cap": 40})
    assert r.status_code == 200, r.text
    sent = fake_provider.last_request
    assert sent["path"] == "/v1/chat/completions"
    assert sent["body"]["model"] == "gpt-upstream" and sent["body"]["messages"] == [{"role": "user", "content": "hello toy"}]
    body = r.json()
    assert set(body) == {"answer", "by", "spent"} and body["by"] == "fast" and body["answer"]
    assert body["spent"] == {"in": sent["usage"]["input_tokens"], "out": sent["usage"]["output_tokens"]}

    # a stream in the toy's own framing, the same text as the whole answer, ending with the provider's usage
    r = await client.post("/toy/v1/ask", json={"use": "gpt-t", "say": "hello toy", "flow": True, "cap": 40})
    assert r.status_code == 200, r.text
    assert b"data:" not in r.content
    blocks = _blocks(r.content)
    assert [n for n, _ in blocks[:-1]] == ["piece"] * (len(blocks) - 1) and blocks[-1][0] == "end"
    assert "".join(d["t"] for _, d in blocks[:-1]) == body["answer"]
    streamed = fake_provider.last_request
    assert streamed["stream"] is True and streamed["body"]["stream_options"] == {"include_usage": True}
    assert blocks[-1][1]["spent"] == {"in": streamed["usage"]["input_tokens"], "out": streamed["usage"]["output_tokens"]}

    # the usage events carry the toy's family and endpoint, and the usage the provider reported
    sink = node.sink
    await _events(sink, 2)
    assert [(e.dialect, e.endpoint, e.stream) for e in sink.events[:2]] == [("toy", "/toy/v1/ask", False),
                                                                             ("toy", "/toy/v1/ask", True)]
    assert sink.events[1].output_tokens == streamed["usage"]["output_tokens"]

    # a rate-limited model: refused in the toy's error shape, with the toy's rate-limit headers
    served = fake_provider.stats()["total"]
    r = await client.post("/toy/v1/ask", json={"use": "limited-t", "say": "again"})
    assert r.status_code == 429
    assert r.json()["oops"]["why"] == "rate_limit" and "2 requests per minute" in r.json()["oops"]["text"]
    assert r.headers["toy-requests-cap"] == "2" and r.headers["toy-requests-left"] == "0"
    assert "x-ratelimit-limit-requests" not in r.headers and "anthropic-ratelimit-requests-limit" not in r.headers
    assert fake_provider.stats()["total"] == served  # nothing reached the provider

    # an Anthropic provider through the chained translator the toy brought: answer and stream in toy shapes
    r = await client.post("/toy/v1/ask", json={"use": "claude-t", "say": "hello claude", "cap": 30})
    assert r.status_code == 200, r.text
    sent = fake_provider.last_request
    assert sent["path"] == "/v1/messages" and sent["body"]["max_tokens"] == 30
    (msg,) = sent["body"]["messages"]
    assert msg["role"] == "user" and "hello claude" in orjson.dumps(msg["content"]).decode()
    whole = r.json()
    assert whole["answer"] and whole["spent"]["out"] == sent["usage"]["output_tokens"]
    r = await client.post("/toy/v1/ask", json={"use": "claude-t", "say": "hello claude", "cap": 30, "flow": True})
    blocks = _blocks(r.content)
    assert blocks[-1][0] == "end" and "".join(d["t"] for n, d in blocks if n == "piece") == whole["answer"]


async def test_toy_dialect_errors_and_model_list(toy_gateway, fake_provider) -> None:
    client, _node = toy_gateway
    # unknown model, bad key, unknown toy path, malformed body: each in the toy's error shape
    r = await client.post("/toy/v1/ask", json={"use": "nope", "say": "x"})
    assert r.status_code == 404 and r.json()["oops"]["why"] == "not_found" and "nope" in r.json()["oops"]["text"]
    r = await client.post("/toy/v1/ask", json={"use": "gpt-t"}, headers={"authorization": "Bearer vk_wrong"})
    assert r.status_code == 401 and r.json()["oops"]["why"] == "authentication"
    r = await client.post("/toy/v1/nothing", json={})
    assert r.status_code == 404 and set(r.json()) == {"oops"}
    r = await client.get("/toy/v1/ask")
    assert r.status_code == 405 and set(r.json()) == {"oops"}
    r = await client.post("/toy/v1/ask", content=b"{not json")
    assert r.status_code == 400 and r.json()["oops"]["why"] == "invalid_request"
    r = await client.post("/toy/v1/ask", json={"say": "no model"})
    assert r.status_code == 400 and "model" in r.json()["oops"]["text"]
    assert fake_provider.requests_to("/v1/chat/completions") == 0

    # the provider fails mid-stream: the toy's own error block ends the stream
    fake_provider.add_fault(fail_after_chunks=2)
    r = await client.post("/toy/v1/ask", json={"use": "gpt-t", "say": "a longer answer please", "flow": True})
    assert r.status_code == 200
    assert _blocks(r.content)[-1][0] == "oops"

    # model listing in the toy's shape; the other APIs' listings are unchanged by its presence
    r = await client.get("/toy/models")
    assert r.status_code == 200
    assert r.json() == {"toys": [{"toy": "claude-t", "maker": "fa"}, {"toy": "fast", "maker": "fo"},
                                 {"toy": "gpt-t", "maker": "fo"}, {"toy": "limited-t", "maker": "fo"}]}
    r = await client.get("/toy/models/gpt-t")
    assert r.json() == {"toy": "gpt-t", "maker": "fo"}
    r = await client.get("/toy/models/absent")
    assert r.status_code == 404 and set(r.json()) == {"oops"}
    r = await client.get("/v1/models")
    assert r.json()["object"] == "list" and [m["id"] for m in r.json()["data"]] == ["claude-t", "fast", "gpt-t", "limited-t"]
    r = await client.get("/v1/models", headers={"anthropic-version": "2023-06-01"})
    assert r.json()["data"][0] == {"type": "model", "id": "claude-t", "display_name": "claude-t",
                                   "created_at": "1970-01-01T00:00:00Z"}
