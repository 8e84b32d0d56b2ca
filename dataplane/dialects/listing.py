"""Model listings and single-model lookups in each dialect's shape (pure).

`models` is [(name, owner)] for the names a key may request, sorted."""

from __future__ import annotations

import orjson

from .base import Models

_EPOCH = "1970-01-01T00:00:00Z"


def openai_model(name: str, owner: str) -> dict[str, object]:
    return {"id": name, "object": "model", "created": 0, "owned_by": owner}


def anthropic_model(name: str, owner: str) -> dict[str, object]:
    return {"type": "model", "id": name, "display_name": name, "created_at": _EPOCH}


def gemini_model(name: str, owner: str) -> dict[str, object]:
    # The fields google-genai reads; limits are the provider's business and not known here.
    return {"name": f"models/{name}", "baseModelId": name, "version": "interlock", "displayName": name,
            "description": f"served by {owner} through Interlock",
            "supportedGenerationMethods": ["generateContent", "streamGenerateContent", "countTokens"]}


def openai_list(models: Models) -> bytes:
    return orjson.dumps({"object": "list", "data": [openai_model(n, o) for n, o in models]})


def anthropic_list(models: Models) -> bytes:
    data = [anthropic_model(n, o) for n, o in models]
    return orjson.dumps({"data": data, "has_more": False, "first_id": models[0][0] if models else None,
                         "last_id": models[-1][0] if models else None})


def gemini_list(models: Models) -> bytes:
    return orjson.dumps({"models": [gemini_model(n, o) for n, o in models]})
