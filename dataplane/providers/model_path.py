"""Kinds that address the model in the URL rather than the body (Gemini, Vertex AI, Bedrock):
`{base_url}{prefix}{model}{suffix}`, with a separate suffix for streams."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from .base import ProviderAdapter, unsupported

STREAM = "+stream"  # paths key suffix for an operation's streaming variant: "generate+stream"


@dataclass(frozen=True, slots=True)
class ModelInPath(ProviderAdapter):
    """paths: operation -> URL suffix after the model (e.g. ":generateContent"); "op+stream" for streams."""

    prefix: str = ""
    drop_fields: tuple[str, ...] = ("model", "stream")  # body fields the provider takes from the URL instead

    def prepare_body(self, body: dict[str, Any], upstream_model: str, stream: bool, operation: str = "chat") -> bool:
        for f in self.drop_fields:
            body.pop(f, None)
        return False

    def url_model(self, model: str) -> str:
        return quote(model, safe="@")

    def path(self, operation: str, model: str, stream: bool) -> str:
        suffix = self.paths.get(operation + STREAM) if stream else None
        if suffix is None:
            suffix = self.paths.get(operation)
            if suffix is None:
                raise unsupported(self, operation)
        return self.prefix + model + suffix
