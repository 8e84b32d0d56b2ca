"""Vertex AI routes: `/v1/projects/{p}/locations/{l}/publishers/google/models/{model}:{method}` (Gemini
dialect) and `.../publishers/anthropic/models/{model}:rawPredict|streamRawPredict` (Anthropic dialect,
`anthropic_version: vertex-2023-10-16` in the body and no `model` field, as Vertex requires).
The OAuth2 access token comes as a bearer token."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from aiohttp import web

from . import anthropic_api, gemini_api
from .dialects import ANTHROPIC, GEMINI
from .handlers import generate
from .model import RequestError, Turn

VERTEX_ANTHROPIC_VERSION = "vertex-2023-10-16"


def bearer(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


VERTEX_GEMINI = replace(GEMINI, api_key=bearer, missing_key_status=401, bad_key_status=401)
VERTEX_ANTHROPIC = replace(ANTHROPIC, api_key=bearer)


def _parse_anthropic(body: Any, model: str) -> Turn:
    if not isinstance(body, dict):
        raise RequestError("Request body must be a JSON object.")
    if body.get("anthropic_version") != VERTEX_ANTHROPIC_VERSION:
        raise RequestError(f"anthropic_version: must be {VERTEX_ANTHROPIC_VERSION!r}")
    if "model" in body:
        raise RequestError("model: Extra inputs are not permitted")
    return anthropic_api.parse_messages({**body, "model": model})


async def publisher_model(request: web.Request) -> web.StreamResponse:
    model, _, method = request.match_info["target"].partition(":")
    publisher = request.match_info["publisher"]
    if publisher == "google" and method in ("generateContent", "streamGenerateContent"):
        stream, sse = method == "streamGenerateContent", request.query.get("alt") == "sse"
        return await generate(
            request, VERTEX_GEMINI, lambda body: gemini_api.parse_generate(body, model=model, stream=stream, sse=sse)
        )
    if publisher == "anthropic" and method in ("rawPredict", "streamRawPredict"):
        return await generate(request, VERTEX_ANTHROPIC, lambda body: _parse_anthropic(body, model))
    raise web.HTTPNotFound()


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/projects/{project}/locations/{location}/publishers/{publisher}/models/{target}",
                        publisher_model)
