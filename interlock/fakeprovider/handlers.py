"""HTTP handlers for the provider APIs: admit (record, authenticate, validate), then
apply the fault/latency options and render in the request's dialect."""

from __future__ import annotations

import dataclasses
import hmac
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from . import anthropic_api, embeddings, gemini_api, openai_api, responses_api
from .config import HeaderOverrides, OptionError, RequestOptions, parse_headers, resolve_options
from .dialects import ANTHROPIC, GEMINI, OPENAI, RESPONSES, Dialect
from .model import RequestError, Turn
from .reply import build_reply
from .state import ProviderState, RecordedRequest
from .transport import json_response, send_json, send_stream, sleep_ms

STATE = web.AppKey("fakeprovider_state", ProviderState)
RETRYABLE_STATUSES = frozenset({429, 503, 529})


@dataclass
class Admitted:
    state: ProviderState
    entry: RecordedRequest
    body: Any
    overrides: HeaderOverrides


def error_response(
    dialect: Dialect,
    entry: RecordedRequest,
    state: ProviderState,
    status: int,
    message: str | None = None,
    param: str | None = None,
) -> web.Response:
    entry.status = status
    headers = {}
    if status in RETRYABLE_STATUSES:
        ms = state.config.retry_after_ms
        headers = {"retry-after": str(math.ceil(ms / 1000)), "retry-after-ms": str(ms)}
    return json_response(dialect.error(status, message, param), status, headers)


async def admit(request: web.Request, dialect: Dialect) -> Admitted | web.Response:
    """Record the request, then check its key, body and `x-fake-*` headers."""
    state = request.app[STATE]
    raw = await request.read()
    body: Any = None
    parse_failed = False
    if raw:
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body, parse_failed = raw.decode("utf-8", "replace"), True
    key = dialect.api_key(request.headers, request.query)
    entry = state.stats.record(request.method, request.path, request.query, request.headers.items(), body, key)
    if key is None:
        return error_response(dialect, entry, state, dialect.missing_key_status, "Missing API key.")
    expected = state.config.api_key
    if expected is not None and not hmac.compare_digest(key.encode(), expected.encode()):
        return error_response(dialect, entry, state, dialect.bad_key_status, "Incorrect API key provided.")
    if parse_failed:
        return error_response(dialect, entry, state, 400, "We could not parse the JSON body of your request.")
    try:
        overrides = parse_headers(request.headers)
    except OptionError as exc:
        return error_response(dialect, entry, state, 400, str(exc))
    return Admitted(state, entry, body, overrides)


async def apply_faults(request: web.Request, admitted: Admitted) -> RequestOptions:
    """Consume a scheduled fault (if any) and wait out the latency before the first byte."""
    rule = admitted.state.faults.take(request.path)
    admitted.entry.fault = rule.to_json() if rule else None
    opts = resolve_options(admitted.state.config, admitted.overrides, rule)
    await sleep_ms(opts.latency_ms)
    return opts


async def generate(request: web.Request, dialect: Dialect, parse: Callable[[Any], Turn]) -> web.StreamResponse:
    admitted = await admit(request, dialect)
    if isinstance(admitted, web.Response):
        return admitted
    state, entry = admitted.state, admitted.entry
    try:
        turn = parse(admitted.body)
    except RequestError as exc:
        return error_response(dialect, entry, state, 400, exc.message, exc.param)
    entry.stream = turn.stream
    opts = await apply_faults(request, admitted)
    if opts.status is not None:
        return error_response(dialect, entry, state, opts.status)
    if state.config.ignore_max_tokens:
        turn = dataclasses.replace(turn, max_tokens=None)
    reply = build_reply(turn, opts.output_tokens, opts.cached_tokens)
    if state.config.prompt_cache and dialect is ANTHROPIC:
        reply = state.prompt_cache.apply(admitted.body, reply, time.monotonic())
    entry.status = 200
    entry.usage = {
        "input_tokens": reply.input_tokens,
        "output_tokens": reply.output_tokens,
        "cached_tokens": reply.cached_tokens,
        "cache_write_5m_tokens": reply.cache_write_5m,
        "cache_write_1h_tokens": reply.cache_write_1h,
        "reasoning_tokens": reply.reasoning_tokens,
    }
    rid, created = state.next_id(), int(time.time())
    headers = {dialect.request_id_header: f"req_{rid}"} if dialect.request_id_header else {}
    if turn.stream:
        events = dialect.stream(turn, reply, rid, created)
        content_type = dialect.stream_content_type if turn.sse else "application/json"
        return await send_stream(request, events, content_type, opts, headers)
    return await send_json(request, dialect.render(turn, reply, rid, created), opts, headers)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await generate(request, OPENAI, openai_api.parse_chat)


async def responses(request: web.Request) -> web.StreamResponse:
    return await generate(request, RESPONSES, responses_api.parse_responses)


async def messages(request: web.Request) -> web.StreamResponse:
    return await generate(request, ANTHROPIC, anthropic_api.parse_messages)


async def count(
    request: web.Request, dialect: Dialect, parse: Callable[[Any], Turn], render: Callable[[Turn], dict[str, Any]]
) -> web.StreamResponse:
    """Token counting (Anthropic count_tokens, Gemini countTokens): same parsing and faults, no generation."""
    admitted = await admit(request, dialect)
    if isinstance(admitted, web.Response):
        return admitted
    try:
        turn = parse(admitted.body)
    except RequestError as exc:
        return error_response(dialect, admitted.entry, admitted.state, 400, exc.message, exc.param)
    opts = await apply_faults(request, admitted)
    if opts.status is not None:
        return error_response(dialect, admitted.entry, admitted.state, opts.status)
    admitted.entry.status, admitted.entry.stream = 200, False
    return await send_json(request, render(turn), opts, {})


async def messages_count_tokens(request: web.Request) -> web.StreamResponse:
    return await count(request, ANTHROPIC, anthropic_api.parse_count_tokens, anthropic_api.count_tokens)


async def gemini_generate(request: web.Request) -> web.StreamResponse:
    model, _, method = request.match_info["target"].partition(":")
    if method == "countTokens":
        return await count(request, GEMINI, lambda body: gemini_api.parse_count(body, model=model), gemini_api.count)
    if method not in ("generateContent", "streamGenerateContent"):
        raise web.HTTPNotFound()
    stream, sse = method == "streamGenerateContent", request.query.get("alt") == "sse"
    return await generate(
        request, GEMINI, lambda body: gemini_api.parse_generate(body, model=model, stream=stream, sse=sse)
    )


async def serve_embeddings(request: web.Request, dialect: Dialect, request_id_header: str) -> web.StreamResponse:
    """OpenAI-shaped embeddings (OpenAI's own path and Azure's differ only in key header and request-id name)."""
    admitted = await admit(request, dialect)
    if isinstance(admitted, web.Response):
        return admitted
    state, entry = admitted.state, admitted.entry
    try:
        req = embeddings.parse(admitted.body)
    except RequestError as exc:
        return error_response(dialect, entry, state, 400, exc.message, exc.param)
    opts = await apply_faults(request, admitted)
    if opts.status is not None:
        return error_response(dialect, entry, state, opts.status)
    payload = embeddings.render(req, state.config.embedding_dimensions)
    entry.status, entry.stream = 200, False
    entry.usage = {"input_tokens": payload["usage"]["prompt_tokens"], "output_tokens": 0, "cached_tokens": 0}
    return await send_json(request, payload, opts, {request_id_header: f"req_{state.next_id()}"})


async def create_embeddings(request: web.Request) -> web.StreamResponse:
    return await serve_embeddings(request, OPENAI, "x-request-id")


async def list_models(request: web.Request) -> web.StreamResponse:
    # One path, two APIs: the anthropic-version header tells the SDKs apart.
    dialect = ANTHROPIC if "anthropic-version" in request.headers else OPENAI
    admitted = await admit(request, dialect)
    if isinstance(admitted, web.Response):
        return admitted
    admitted.entry.status = 200
    models, created = admitted.state.config.models, int(time.time())
    render = anthropic_api.models_list if dialect is ANTHROPIC else openai_api.models_list
    return json_response(render(models, created))


async def get_model(request: web.Request) -> web.StreamResponse:
    admitted = await admit(request, OPENAI)
    if isinstance(admitted, web.Response):
        return admitted
    model = request.match_info["model"]
    if model not in admitted.state.config.models:
        return error_response(
            OPENAI, admitted.entry, admitted.state, 404, f"The model '{model}' does not exist", "model"
        )
    admitted.entry.status = 200
    return json_response({"id": model, "object": "model", "created": int(time.time()), "owned_by": "fakeprovider"})


async def gemini_models(request: web.Request) -> web.StreamResponse:
    admitted = await admit(request, GEMINI)
    if isinstance(admitted, web.Response):
        return admitted
    models = admitted.state.config.models
    target = request.match_info.get("target")
    if target is None:
        admitted.entry.status = 200
        return json_response({"models": [gemini_api.model_info(m) for m in models]})
    name = target.removeprefix("models/")
    if name not in models:
        return error_response(GEMINI, admitted.entry, admitted.state, 404, f"models/{name} is not found.")
    admitted.entry.status = 200
    return json_response(gemini_api.model_info(name))


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/messages", messages)
    app.router.add_post("/v1/messages/count_tokens", messages_count_tokens)
    app.router.add_post("/v1/responses", responses)
    app.router.add_post("/v1/embeddings", create_embeddings)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{model}", get_model)
    app.router.add_post("/v1beta/models/{target}", gemini_generate)
    app.router.add_get("/v1beta/models", gemini_models)
    app.router.add_get("/v1beta/models/{target}", gemini_models)
