"""AWS Bedrock runtime routes: Converse (`/model/{id}/converse[-stream]`) and InvokeModel for
Anthropic models (`/model/{id}/invoke[-with-response-stream]`).

Every request must carry a valid SigV4 signature (service `bedrock`) made with the secret access key
`config.api_key` (or FAKE_AWS_SECRET when none is configured), checked by an implementation
independent of the gateway's signer, or a Bedrock API key as a bearer token. Streams are AWS event-stream frames."""

from __future__ import annotations

import base64
from dataclasses import replace
from typing import Any

import orjson
from aiohttp import web

from . import anthropic_api, converse_api
from .dialects import ANTHROPIC, Dialect
from .eventstream import encode_message
from .handlers import STATE, generate
from .model import Reply, RequestError, Turn
from .sigv4_verify import SignatureError, verify
from .transport import json_response

FAKE_AWS_SECRET = "fake-aws-secret-key"
BEDROCK_ANTHROPIC_VERSION = "bedrock-2023-05-31"


def _error(status: int, message: str | None = None, param: str | None = None) -> dict[str, Any]:
    return converse_api.error(status, message, param)


def _invoke_stream(turn: Turn, reply: Reply, rid: str, created: int) -> list[bytes]:
    """Anthropic's events, each wrapped as InvokeModel does: a `chunk` holding base64 of the event JSON."""
    frames = []
    for sse in anthropic_api.stream(turn, reply, rid, created):
        event = orjson.loads(sse.split(b"data: ", 1)[1])
        if event["type"] == "message_stop":  # Bedrock appends its own metrics to the last event
            event["amazon-bedrock-invocationMetrics"] = {
                "inputTokenCount": reply.input_tokens, "outputTokenCount": reply.output_tokens,
                "invocationLatency": 1, "firstByteLatency": 1}
        payload = orjson.dumps({"bytes": base64.b64encode(orjson.dumps(event)).decode()})
        frames.append(encode_message({":event-type": "chunk", ":content-type": "application/json",
                                      ":message-type": "event"}, payload))
    return frames


CONVERSE = Dialect(
    name=converse_api.NAME, api_key=lambda h, q: None, error=_error, render=converse_api.response,
    stream=converse_api.stream, stream_content_type=converse_api.STREAM_CONTENT_TYPE,
    missing_key_status=403, bad_key_status=403, request_id_header="x-amzn-requestid",
)
INVOKE_ANTHROPIC = replace(
    ANTHROPIC, error=_error, stream=_invoke_stream, stream_content_type=converse_api.STREAM_CONTENT_TYPE,
    missing_key_status=403, bad_key_status=403, request_id_header="x-amzn-requestid",
)


def _parse_invoke(body: Any, *, model: str, stream: bool) -> Turn:
    if not isinstance(body, dict):
        raise RequestError("Request body must be a JSON object.")
    if body.get("anthropic_version") != BEDROCK_ANTHROPIC_VERSION:
        raise RequestError(f"anthropic_version: must be {BEDROCK_ANTHROPIC_VERSION!r}")
    for extra in ("model", "stream"):
        if extra in body:
            raise RequestError(f"{extra}: Extra inputs are not permitted")
    return replace(anthropic_api.parse_messages({**body, "model": model}), stream=stream)


async def _signed(request: web.Request) -> str | web.Response:
    """The verified secret, or the 403 Bedrock sends for a bad or missing signature.
    A bearer token is a Bedrock API key: passed on for admit() to check like any key."""
    state = request.app[STATE]
    raw = await request.read()
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme == "Bearer" and token:
        return token
    secret = state.config.api_key or FAKE_AWS_SECRET
    headers = {k.lower(): v for k, v in request.headers.items()}
    try:
        verify(secret, method=request.method, raw_path=request.raw_path.split("?", 1)[0],
               query=request.query_string, headers=headers, body=raw, service="bedrock")
    except SignatureError as exc:
        entry = state.stats.record(request.method, request.path, request.query, request.headers.items(), None, None)
        entry.status = 403
        return json_response({"message": str(exc)}, 403, {"x-amzn-errortype": "InvalidSignatureException"})
    return secret


async def runtime(request: web.Request) -> web.StreamResponse:
    model, action = request.match_info["model"], request.match_info["action"]
    signed = await _signed(request)
    if isinstance(signed, web.Response):
        return signed
    key = signed  # admit() compares it with config.api_key like any other dialect's key
    if action in ("converse", "converse-stream"):
        dialect = replace(CONVERSE, api_key=lambda h, q: key)
        stream = action == "converse-stream"
        return await generate(request, dialect, lambda b: converse_api.parse_converse(b, model=model, stream=stream))
    if action in ("invoke", "invoke-with-response-stream"):
        dialect = replace(INVOKE_ANTHROPIC, api_key=lambda h, q: key)
        stream = action == "invoke-with-response-stream"
        return await generate(request, dialect, lambda b: _parse_invoke(b, model=model, stream=stream))
    raise web.HTTPNotFound()


def add_routes(app: web.Application) -> None:
    app.router.add_post("/model/{model:.+}/{action}", runtime)
