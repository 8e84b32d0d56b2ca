"""Google Gemini API (generativelanguage.googleapis.com), native dialect: the model is in the path,
the key goes in `x-goog-api-key` (never in `?key=`, which ends up in access logs)."""

from __future__ import annotations

from .base import ProviderAdapter
from .model_path import STREAM, ModelInPath

GEMINI_SUFFIXES = {
    "generate": ":generateContent",
    "generate" + STREAM: ":streamGenerateContent?alt=sse",
    "count_tokens": ":countTokens",
}


def adapters() -> list[ProviderAdapter]:
    return [
        ModelInPath(
            kind="gemini", dialect="gemini", paths=GEMINI_SUFFIXES, prefix="/v1beta/models/",
            auth_header="x-goog-api-key",
        ),
    ]
