"""The cloud providers' URL shapes (Azure OpenAI, Vertex AI, AWS Bedrock), registered next to the
first-party APIs."""

from __future__ import annotations

from aiohttp import web

from . import azure, bedrock, vertex


def add_routes(app: web.Application) -> None:
    azure.add_routes(app)
    vertex.add_routes(app)
    bedrock.add_routes(app)
