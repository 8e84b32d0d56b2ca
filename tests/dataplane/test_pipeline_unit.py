"""The request pipeline driven in-process: Proxy with a scripted upstream, a recording connection and the injected
clock, monotonic clock, sleep and random, with no gateway process and no sockets.

What the client receives is read back from the bytes the Responder wrote (status line, headers, body), and what
the provider was asked from the scripted upstream's log: both independent of the pipeline's own records.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from controlplane.policy.compiler import compile_snapshot
from controlplane.policy.model import Budget, KeyRecord, Model, PolicyDocument, Price, Provider, RateLimit, Team
from controlplane.policy.routing_model import RoutingRule, RuleMatch
from dataplane.budget.gate import BudgetGate, PoolTable
from dataplane.dialects.base import ErrorKind
from dataplane.dialects.client_errors import GatewayError
from dataplane.dialects.registry import default_dialects
from dataplane.http.messages import Request, Responder
from dataplane.pipeline.context import RequestContext
from dataplane.pipeline.proxy import Endpoint, Proxy
from dataplane.providers.registry import default_providers
from dataplane.snapshot.policy import CompiledPolicy, env_and_file_credentials
from dataplane.translate.registry import default_translations
from interlock_contracts.keys import hash_key, new_secret

PEPPER = b"pipeline-unit-pepper"
NOW = 1_800_000_000.0
DIALECTS = default_dialects()


def _chat(text: str = "hello") -> bytes:
    return orjson.dumps({"id": "c1", "object": "chat.completion", "created": 0, "model": "up",
                         "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                      "finish_reason": "stop"}],
                         "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}})


def _chunk(delta: dict[str, Any], finish: str | None = None, usage: dict[str, int] | None = None) -> bytes:
    d: dict[str, Any] = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": "up",
                         "choices": [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if usage:
        d["usage"] = usage
    return b"data: " + orjson.dumps(d) + b"\n\n"


class _Body:
    def __init__(self, chunks: list[bytes | Exception]) -> None:
        self._chunks = chunks

    async def iter_any(self) -> AsyncIterator[bytes]:
        for c in self._chunks:
            if isinstance(c, Exception):
                raise c
            yield c


class _Response:
    def __init__(self, status: int, payload: bytes, chunks: list[bytes | Exception], headers: dict[str, str]) -> None:
        self.status = status
        self.headers = {"content-type": "text/event-stream" if chunks else "application/json", **headers}
        self.content = _Body(chunks or [payload])  # a whole body is read through the same iterator

    async def __aenter__(self) -> _Response:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


class ScriptedUpstream:
    """Answers each provider (by its base host) from a script, in order; logs what it was sent."""

    def __init__(self) -> None:
        self.script: dict[str, list[_Response]] = {}
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def add(self, host: str, status: int = 200, payload: bytes = b"", chunks: list[bytes | Exception] | None = None,
            headers: dict[str, str] | None = None) -> None:
        self.script.setdefault(host, []).append(_Response(status, payload, chunks or [], headers or {}))

    def post(self, url: str, headers: Any, data: bytes, timeout_s: float, provider: str) -> _Response:
        host = url.split("/")[2]
        self.sent.append((host, orjson.loads(data)))
        return self.script[host].pop(0)


class RecordingConn:
    closed = False

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    async def drain(self) -> None:
        pass

    @property
    def heads(self) -> list[bytes]:
        return [w for w in self.writes if w.startswith(b"HTTP/1.1 ")]

    def answer(self) -> tuple[int, dict[str, str], bytes]:
        """The one response written: status, headers, body (chunked transfer decoded)."""
        assert len(self.heads) == 1, f"the response was started {len(self.heads)} times"
        raw = b"".join(self.writes)
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        if headers.get("transfer-encoding") == "chunked":
            body = b""
            while rest:
                size, _, rest = rest.partition(b"\r\n")
                n = int(size, 16)
                body, rest = body + rest[:n], rest[n + 2:]
            rest = body
        return status, headers, rest


class Sink:
    def __init__(self) -> None:
        self.events: list[Any] = []

    def emit(self, event: Any) -> None:
        self.events.append(event)


class Clocks:
    def __init__(self) -> None:
        self.mono = 100.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.mono

    async def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.mono += s


def _policy() -> tuple[CompiledPolicy, dict[str, str]]:
    doc = PolicyDocument(
        providers=[Provider(name="p1", kind="openai_compatible", base_url="http://p1.test/v1", credential="env:K"),
                   Provider(name="p2", kind="openai_compatible", base_url="http://p2.test/v1", credential="env:K")],
        models=[Model(name="m1", provider="p1", upstream="up-1", price=Price(input="1", output="2")),
                Model(name="m2", provider="p2", upstream="up-2", price=Price(input="1", output="2")),
                Model(name="limited", provider="p1", price=Price(input="1", output="2")),
                Model(name="retried", provider="p1", price=Price(input="1", output="2"))],
        teams=[Team(id="eng")],
        routes=[RoutingRule(id="fb", match=RuleMatch(models=["m1"]), fallback=["m2"]),
                RoutingRule(id="rt", match=RuleMatch(models=["retried"]), retries=2, backoff_ms=100)],
        budgets=[Budget(id="tiny", scope="key", scope_id="vk_poor", limit_usd="0.000001")],
        rate_limits=[RateLimit(id="rl", scope="key", scope_id="vk_main", models=["limited"], requests_per_minute=5)],
    )
    secrets = {"vk_main": new_secret(), "vk_poor": new_secret()}
    keys = [KeyRecord(id=k, key_hash=hash_key(PEPPER, s).hex(), team="eng") for k, s in secrets.items()]
    snap = compile_snapshot(doc, keys, version=4, now_ms=int(NOW * 1000))
    policy = CompiledPolicy.from_snapshot(snap, adapters=default_providers(),
                                          credentials=env_and_file_credentials({"K": "sk-up"}))
    return policy, secrets


class Harness:
    def __init__(self, seed: int = 7) -> None:
        self.policy, self.secrets = _policy()
        self.upstream = ScriptedUpstream()
        self.sink = Sink()
        self.clocks = Clocks()
        self.gate = BudgetGate(PoolTable(), clock=lambda: NOW, wait_s=0.01)
        self.proxy = Proxy(policy=lambda: self.policy, pepper=PEPPER, upstream=self.upstream,  # type: ignore[arg-type]
                           sink=self.sink, node_id="unit", clock=lambda: NOW, budgets=self.gate,  # type: ignore[arg-type]
                           translations=default_translations(DIALECTS), monotonic=self.clocks.monotonic,
                           sleep=self.clocks.sleep, rng=random.Random(seed))

    async def call(self, dialect: str, model: str, *, key: str = "vk_main", stream: bool = False,
                   headers: dict[str, str] | None = None, no_key: bool = False) -> RecordingConn:
        secret = self.secrets[key]
        d = DIALECTS[dialect]
        hdrs = {"content-type": "application/json", **(headers or {})}
        query = ""
        if dialect == "gemini":
            method = "streamGenerateContent" if stream else "generateContent"
            path = f"/v1beta/models/{model}:{method}"
            query = "alt=sse" if stream else ""
            body: dict[str, Any] = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
            hdrs["x-goog-api-key"] = secret
        elif dialect == "anthropic":
            path = "/v1/messages"
            body = {"model": model, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
            hdrs["x-api-key"] = secret
        elif dialect == "openai_responses":
            path = "/v1/responses"
            body = {"model": model, "input": "hi", "max_output_tokens": 10, "stream": stream}
            hdrs["authorization"] = f"Bearer {secret}"
        else:
            path = "/v1/chat/completions"
            body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10, "stream": stream}
            hdrs["authorization"] = f"Bearer {secret}"
        if no_key:
            for name in ("authorization", "x-api-key", "x-goog-api-key"):
                hdrs.pop(name, None)
        spec = d.match("POST", path) or next(s for s in d.endpoints() if s.path == path)
        conn = RecordingConn()
        req = Request("POST", path, query, hdrs, orjson.dumps(body), True)
        await self.proxy.handle(req, Responder(conn, True), Endpoint(d, spec.operation, spec.path))  # type: ignore[arg-type]
        return conn


# ---- stage order ------------------------------------------------------------------------------------------


class RecordingGuardrails:
    def __init__(self, log: list[str], refuse_input: bool = False) -> None:
        self.log = log
        self.refuse_input = refuse_input

    def check_input(self, ctx: RequestContext) -> None:
        self.log.append("input guardrails")
        if self.refuse_input:
            raise GatewayError(400, ErrorKind.INVALID_REQUEST, "blocked by a guardrail")

    def check_routed_input(self, ctx: RequestContext) -> None:
        self.log.append("routed input guardrails")

    def attach_output(self, ctx: RequestContext) -> None:
        self.log.append("output guardrails")


def _trace(h: Harness, log: list[str]) -> None:
    pipe = h.proxy.pipeline
    for stage in ("authenticate", "tags", "route"):
        def wrap(ctx: RequestContext, _f: Any = getattr(pipe, stage), _n: str = stage) -> None:
            log.append(_n)
            _f(ctx)
        setattr(pipe, stage, wrap)
    admit = pipe.admit

    async def traced_admit(ctx: RequestContext) -> None:
        log.append("admit")
        await admit(ctx)
    pipe.admit = traced_admit  # type: ignore[method-assign]
    post = h.upstream.post

    def traced_post(*a: Any, **kw: Any) -> _Response:
        log.append("attempt")
        return post(*a, **kw)
    h.upstream.post = traced_post  # type: ignore[method-assign]


async def test_stages_run_in_the_documented_order() -> None:
    h = Harness()
    log: list[str] = []
    h.proxy.pipeline.guardrails = RecordingGuardrails(log)
    _trace(h, log)
    h.upstream.add("p2.test", payload=_chat())
    conn = await h.call("openai", "m2")
    assert log == ["authenticate", "tags", "input guardrails", "route", "routed input guardrails", "admit",
                   "output guardrails", "attempt"]
    status, _headers, body = conn.answer()
    assert status == 200 and orjson.loads(body)["choices"][0]["message"]["content"] == "hello"
    (ev,) = h.sink.events
    assert (ev.status, ev.model, ev.input_tokens, ev.output_tokens) == (200, "m2", 5, 2)


async def test_a_refusing_stage_stops_the_pipeline_before_any_provider_call() -> None:
    h = Harness()
    log: list[str] = []
    h.proxy.pipeline.guardrails = RecordingGuardrails(log, refuse_input=True)
    _trace(h, log)
    conn = await h.call("anthropic", "m2")
    assert log == ["authenticate", "tags", "input guardrails"]
    assert h.upstream.sent == []
    status, _headers, body = conn.answer()
    assert status == 400 and orjson.loads(body) == {
        "type": "error", "error": {"type": "invalid_request_error", "message": "blocked by a guardrail"}}
    assert (h.sink.events[0].status, h.sink.events[0].error_class) == (400, ErrorKind.INVALID_REQUEST)


# ---- refusals in each dialect's shape ---------------------------------------------------------------------


def _error_of(dialect: str, body: bytes) -> tuple[str, str]:
    """(error type/status, message) read the way each API's SDK reads it."""
    e = orjson.loads(body)
    if dialect == "anthropic":
        assert e["type"] == "error" and set(e["error"]) == {"type", "message"}
        return e["error"]["type"], e["error"]["message"]
    if dialect == "gemini":
        assert set(e["error"]) == {"code", "message", "status"}
        return e["error"]["status"], e["error"]["message"]
    assert set(e["error"]) == {"message", "type", "param", "code"}
    return e["error"]["type"], e["error"]["message"]


REFUSALS = {  # dialect -> (no key, budget exhausted, rate limited): the type each API's SDK maps to its exception
    "openai": ("invalid_request_error", "insufficient_quota", "rate_limit_exceeded"),
    "openai_responses": ("invalid_request_error", "insufficient_quota", "rate_limit_exceeded"),
    "anthropic": ("authentication_error", "billing_error", "rate_limit_error"),
    "gemini": ("UNAUTHENTICATED", "RESOURCE_EXHAUSTED", "RESOURCE_EXHAUSTED"),
}
RATE_HEADER = {"openai": "x-ratelimit-limit-requests", "openai_responses": "x-ratelimit-limit-requests",
               "anthropic": "anthropic-ratelimit-requests-limit", "gemini": "x-ratelimit-limit-requests"}


@pytest.mark.parametrize("dialect", sorted(REFUSALS))
async def test_refusals_come_in_the_clients_own_shape(dialect: str) -> None:
    h = Harness()
    no_key, budget, rate = REFUSALS[dialect]
    conn = await h.call(dialect, "m2", no_key=True)
    status, _, body = conn.answer()
    assert status == 401 and _error_of(dialect, body)[0] == no_key

    conn = await h.call(dialect, "m2", key="vk_poor")
    status, headers, body = conn.answer()
    kind, message = _error_of(dialect, body)
    assert status == 402 and kind == budget and "key 'vk_poor'" in message and "$0.000001" in message

    conn = await h.call(dialect, "limited")
    status, headers, body = conn.answer()
    kind, message = _error_of(dialect, body)
    assert status == 429 and kind == rate and "5 requests per minute" in message
    assert headers[RATE_HEADER[dialect]] == "5" and headers["x-interlock-limit-id"] == "rl"
    others = set(RATE_HEADER.values()) - {RATE_HEADER[dialect]}
    assert not others & set(headers)
    assert h.upstream.sent == []  # no refusal reached a provider
    family = DIALECTS[dialect].family
    assert [(e.status, e.dialect) for e in h.sink.events] == [(401, family), (402, family), (429, family)]


async def test_refusal_mid_stream_is_a_terminal_event_not_a_second_response() -> None:
    h = Harness()
    h.upstream.add("p2.test", chunks=[_chunk({"role": "assistant", "content": "he"}),
                                      GatewayError(502, ErrorKind.UPSTREAM, "the provider hung up")])
    conn = await h.call("anthropic", "m2", stream=True)  # translated: Anthropic client, OpenAI provider
    status, headers, body = conn.answer()
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    assert body.count(b"event: message_start") == 1
    assert body.endswith(b'event: error\ndata: {"type":"error","error":{"type":"api_error","message":"the provider hung up"}}\n\n')
    (ev,) = h.sink.events
    assert ev.status == 502 and ev.error_class == ErrorKind.UPSTREAM and ev.stream


# ---- attempts and fallback --------------------------------------------------------------------------------


async def test_a_retryable_failure_falls_back_and_the_answer_is_written_once() -> None:
    h = Harness()
    h.upstream.add("p1.test", status=503, payload=b'{"error":{"message":"overloaded"}}')
    h.upstream.add("p2.test", payload=_chat("from p2"))
    conn = await h.call("openai", "m1")
    assert [(host, body["model"]) for host, body in h.upstream.sent] == [("p1.test", "up-1"), ("p2.test", "up-2")]
    status, headers, body = conn.answer()
    assert status == 200 and orjson.loads(body)["choices"][0]["message"]["content"] == "from p2"
    assert headers["x-interlock-route"] == "fb"
    (ev,) = h.sink.events
    assert [(a.provider, a.status) for a in ev.attempts] == [("p1", 503), ("p2", 200)]
    assert ev.model == "m2" and ev.requested_model == "m1" and h.clocks.sleeps == []  # fallback: no backoff


async def test_a_non_retryable_failure_is_answered_without_fallback() -> None:
    h = Harness()
    h.upstream.add("p1.test", status=400, payload=b'{"error":{"message":"bad tool schema","type":"invalid_request_error"}}')
    conn = await h.call("openai", "m1")
    assert len(h.upstream.sent) == 1
    status, _, body = conn.answer()
    assert status == 400 and orjson.loads(body)["error"]["message"] == "bad tool schema"
    assert [(a.provider, a.status) for a in h.sink.events[0].attempts] == [("p1", 400)]


async def test_retries_back_off_with_the_injected_sleep_and_random() -> None:
    delays = []
    for seed in (1, 1, 2):
        h = Harness(seed)
        h.upstream.add("p1.test", status=503, payload=b"{}")
        h.upstream.add("p1.test", status=503, payload=b"{}")
        h.upstream.add("p1.test", payload=_chat("third time"))
        conn = await h.call("openai", "retried")
        status, _, body = conn.answer()
        assert status == 200 and b"third time" in body and len(h.upstream.sent) == 3
        assert len(h.clocks.sleeps) == 2 and all(0 <= s <= 0.4 for s in h.clocks.sleeps)
        assert [a.status for a in h.sink.events[0].attempts] == [503, 503, 200]
        delays.append(h.clocks.sleeps)
    assert delays[0] == delays[1]  # the same seed, the same backoff: the schedule comes from the injected random


async def test_when_every_attempt_fails_the_last_failure_is_sent_once_in_the_clients_shape() -> None:
    h = Harness()
    for _ in range(3):
        h.upstream.add("p1.test", status=503, payload=b'{"error":{"message":"still down"}}', headers={"retry-after": "0"})
    conn = await h.call("openai_responses", "retried")
    status, _, body = conn.answer()
    assert status == 503 and len(h.upstream.sent) == 3
    assert h.upstream.sent[0][1]["input"] == "hi"  # the provider serves /responses too: passed through
    assert orjson.loads(body)["error"]["message"] == "still down"
    assert [a.status for a in h.sink.events[0].attempts] == [503, 503, 503]


async def test_a_stream_is_relayed_once_and_billed_from_the_providers_usage() -> None:
    h = Harness()
    h.upstream.add("p2.test", chunks=[_chunk({"role": "assistant", "content": "hel"}), _chunk({"content": "lo"}),
                                      _chunk({}, "stop"), _chunk({}, usage={"prompt_tokens": 9, "completion_tokens": 3,
                                                                           "total_tokens": 12}), b"data: [DONE]\n\n"])
    conn = await h.call("gemini", "m2", stream=True)
    status, _, body = conn.answer()
    assert status == 200 and b"\r\n\r\n" in body and b"[DONE]" not in body  # Gemini's framing, from its dialect
    texts = [orjson.loads(e[6:])["candidates"][0]["content"]["parts"][0].get("text", "")
             for e in body.split(b"\r\n\r\n") if e.startswith(b"data: ") and b'"candidates"' in e]
    assert "".join(texts) == "hello"
    (ev,) = h.sink.events
    assert (ev.input_tokens, ev.output_tokens, ev.stream, ev.dialect) == (9, 3, True, "gemini")
