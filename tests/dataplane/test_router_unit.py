"""The Router in-process: its endpoint table, dialect guessing, refusals and model lists all come from the dialect
registry. A recording proxy stands in for the pipeline; responses are read back from the bytes written."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from dataplane.dialects.registry import default_dialects
from dataplane.http.messages import Request, Responder
from dataplane.pipeline.proxy import Endpoint
from dataplane.pipeline.router import Router
from tests.dataplane.test_pipeline_unit import NOW, PEPPER, RecordingConn, _policy


class RecordingProxy:
    def __init__(self) -> None:
        self.handled: list[Endpoint] = []

    async def handle(self, req: Request, resp: Responder, ep: Endpoint) -> None:
        self.handled.append(ep)
        resp.send(200, "application/json", b"{}")


@pytest.fixture
def router() -> tuple[Router, RecordingProxy, dict[str, str]]:
    policy, secrets = _policy()
    proxy = RecordingProxy()
    r = Router(proxy=proxy, dialects=default_dialects(), policy=lambda: policy, pepper=PEPPER,  # type: ignore[arg-type]
               clock=lambda: NOW, ready=lambda: True)
    return r, proxy, secrets


async def _send(r: Router, method: str, path: str, headers: dict[str, str] | None = None,
                query: str = "") -> tuple[int, dict[str, str], Any]:
    conn = RecordingConn()
    await r(Request(method, path, query, headers or {}, b"{}", True), Responder(conn, True))  # type: ignore[arg-type]
    status, hdrs, body = conn.answer()
    return status, hdrs, orjson.loads(body)


ENDPOINTS = [  # (path, registry name, operation, path the event records)
    ("/v1/chat/completions", "openai", "chat", "/v1/chat/completions"),
    ("/v1/embeddings", "openai", "embeddings", "/v1/embeddings"),
    ("/v1/responses", "openai_responses", "responses", "/v1/responses"),
    ("/v1/responses/input_tokens", "openai_responses", "count_tokens", "/v1/responses/input_tokens"),
    ("/v1/messages", "anthropic", "messages", "/v1/messages"),
    ("/v1/messages/count_tokens", "anthropic", "count_tokens", "/v1/messages/count_tokens"),
    ("/v1beta/models/m1:generateContent", "gemini", "generate", "/v1beta/models/{model}:generateContent"),
    ("/v1/models/m1:countTokens", "gemini", "count_tokens", "/v1/models/{model}:countTokens"),
]


@pytest.mark.parametrize(("path", "name", "operation", "recorded"), ENDPOINTS)
async def test_every_dialects_endpoints_are_served(router: Any, path: str, name: str, operation: str,
                                                   recorded: str) -> None:
    r, proxy, _ = router
    status, _, _ = await _send(r, "POST", path)
    assert status == 200
    (ep,) = proxy.handled
    assert (ep.dialect.name, ep.operation, ep.path) == (name, operation, recorded)
    assert r.in_flight == 0 and r.idle.is_set()
    assert recorded in {e.path for e in r.endpoints()}


async def test_a_dialect_rejects_what_it_cannot_serve_before_the_proxy(router: Any) -> None:
    r, proxy, _ = router
    status, _, body = await _send(r, "POST", "/v1beta/models/m1:streamGenerateContent")
    assert status == 400 and body["error"]["status"] == "INVALID_ARGUMENT" and "alt=sse" in body["error"]["message"]
    assert proxy.handled == []
    status, _, _ = await _send(r, "POST", "/v1beta/models/m1:streamGenerateContent", query="alt=sse")
    assert status == 200 and proxy.handled[0].operation == "generate"


async def test_unserved_paths_answer_in_the_shape_of_the_api_they_look_like(router: Any) -> None:
    r, proxy, _ = router
    status, _, body = await _send(r, "POST", "/v1/nothing")
    assert status == 404 and set(body["error"]) == {"message", "type", "param", "code"}
    status, _, body = await _send(r, "GET", "/v1/messages")
    assert status == 405 and body["type"] == "error"
    status, _, body = await _send(r, "POST", "/v1/nothing", headers={"anthropic-version": "2023-06-01"})
    assert status == 404 and body["type"] == "error"
    status, _, body = await _send(r, "POST", "/v1beta/models/m1:embedContent")
    assert status == 404 and body["error"]["status"] == "NOT_FOUND" and "'embedContent' is not served" in body["error"]["message"]
    assert proxy.handled == []
    assert orjson.loads(r.render_error("/v1/messages", 413, "too big"))["error"]["type"] == "request_too_large"


async def test_model_lists_in_each_dialects_shape_rendered_once_per_allowlist(router: Any) -> None:
    r, _, secrets = router
    bearer = {"authorization": f"Bearer {secrets['vk_main']}"}
    names = ["limited", "m1", "m2", "retried"]
    status, _, body = await _send(r, "GET", "/v1/models", bearer)
    assert status == 200 and body["object"] == "list" and [m["id"] for m in body["data"]] == names
    assert body["data"][1] == {"id": "m1", "object": "model", "created": 0, "owned_by": "p1"}
    status, _, body = await _send(r, "GET", "/v1/models", {"x-api-key": secrets["vk_main"], "anthropic-version": "1"})
    assert [m["id"] for m in body["data"]] == names and body["first_id"] == "limited" and body["has_more"] is False
    status, _, body = await _send(r, "GET", "/v1beta/models", {"x-goog-api-key": secrets["vk_main"]})
    assert [m["name"] for m in body["models"]] == [f"models/{n}" for n in names]
    status, _, body = await _send(r, "GET", "/v1beta/models/m2", {"x-goog-api-key": secrets["vk_main"]})
    assert body["name"] == "models/m2" and "served by p2" in body["description"]
    status, _, body = await _send(r, "GET", "/v1/models/absent", bearer)
    assert status == 404 and body["error"]["code"] == "model_not_found"
    status, _, body = await _send(r, "GET", "/v1/models")
    assert status == 401 and body["error"]["code"] == "invalid_api_key"
    policy = r._policy()
    first = policy.model_list(default_dialects()["openai"], None)
    assert policy.model_list(default_dialects()["openai"], None) is first  # memoised on the immutable snapshot
    assert policy.model_owners == (("limited", "p1"), ("m1", "p1"), ("m2", "p2"), ("retried", "p1"))
