"""Azure OpenAI routes: the v1 API (`/openai/v1/chat/completions`, `/responses`, `/embeddings`;
deployment name as `model`) and the deployments API
(`/openai/deployments/{deployment}/chat/completions?api-version=...`, which Azure answers with 404
when api-version is missing). Keys come in the `api-key` header (or an Entra bearer token)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from aiohttp import web

from . import openai_api, responses_api
from .dialects import OPENAI, RESPONSES
from .handlers import generate, serve_embeddings
from .transport import json_response


def api_key(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    return headers.get("api-key", "").strip() or openai_api.api_key(headers, query)


AZURE = replace(OPENAI, name="azure_openai", api_key=api_key)
AZURE_RESPONSES = replace(RESPONSES, api_key=api_key)


async def v1_chat(request: web.Request) -> web.StreamResponse:
    return await generate(request, AZURE, openai_api.parse_chat)


async def deployment_chat(request: web.Request) -> web.StreamResponse:
    if not request.query.get("api-version"):
        return json_response({"error": {"code": "404", "message": "Resource not found"}}, 404)
    deployment = request.match_info["deployment"]

    def parse(body: Any) -> Any:  # the deployment decides the model; a body `model` is ignored
        return openai_api.parse_chat({**body, "model": deployment} if isinstance(body, dict) else body)

    return await generate(request, AZURE, parse)


async def v1_responses(request: web.Request) -> web.StreamResponse:
    return await generate(request, AZURE_RESPONSES, responses_api.parse_responses)


async def v1_embeddings(request: web.Request) -> web.StreamResponse:
    return await serve_embeddings(request, AZURE, "apim-request-id")


def add_routes(app: web.Application) -> None:
    app.router.add_post("/openai/v1/chat/completions", v1_chat)
    app.router.add_post("/openai/v1/responses", v1_responses)
    app.router.add_post("/openai/v1/embeddings", v1_embeddings)
    app.router.add_post("/openai/deployments/{deployment}/chat/completions", deployment_chat)
