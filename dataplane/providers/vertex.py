"""Vertex AI: Gemini models (`publishers/google`, the Gemini dialect) and Anthropic models
(`publishers/anthropic`, the Anthropic dialect with `anthropic_version` in the body and the model
in the path).

URL: `{base_url}/v1/projects/{project}/locations/{location}/publishers/{publisher}/models/{model}:{method}`
with base_url `https://{location}-aiplatform.googleapis.com` (or `https://aiplatform.googleapis.com`
for location `global`). Auth: an OAuth2 access token as a bearer token. The data plane makes no
network call to mint or refresh it: the credential ref points at a token the operator keeps fresh
(e.g. `file:/run/secrets/vertex-token` rewritten by a sidecar running `gcloud auth print-access-token`
or a workload-identity agent); every node re-reads it every INTERLOCK_CREDENTIAL_REFRESH_S.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from .base import (
    Headers,
    ProviderAdapter,
    ProviderConfigError,
    ProviderTarget,
    anthropic_error,
    error_message,
    is_anthropic_error,
)
from .gemini import GEMINI_SUFFIXES
from .model_path import STREAM, ModelInPath

_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
VERTEX_ANTHROPIC_VERSION = "vertex-2023-10-16"


@dataclass(frozen=True, slots=True)
class Vertex(ModelInPath):
    publisher: str = "google"

    def bind(self, options: Mapping[str, str], secret: str | None) -> ProviderAdapter:
        ProviderAdapter.bind(self, options, secret)
        project, location = options.get("project", ""), options.get("location", "")
        for name, value in (("project", project), ("location", location)):
            if not _ID.match(value):
                raise ProviderConfigError(
                    f"options.{name} must be a Google Cloud {name} id (lower-case letters, digits, '-'), got {value!r}"
                )
        return replace(self, prefix=f"/v1/projects/{project}/locations/{location}/publishers/{self.publisher}/models/")


@dataclass(frozen=True, slots=True)
class VertexAnthropic(Vertex):
    def prepare_body(self, body: dict[str, Any], upstream_model: str, stream: bool, operation: str = "chat") -> bool:
        body.pop("model", None)  # `stream` stays: Vertex reads it together with :streamRawPredict
        body["anthropic_version"] = VERTEX_ANTHROPIC_VERSION
        return False

    def error_payload(self, status: int, payload: bytes) -> bytes | None:
        # Vertex's own failures (auth, quota, unknown model) come as Google errors; the model's own are Anthropic's.
        if is_anthropic_error(payload):
            return None
        msg = error_message(payload)
        return anthropic_error(status, f"Vertex AI: {msg}" if msg else f"Vertex AI returned HTTP {status}")

    def path(self, operation: str, model: str, stream: bool) -> str:
        if operation == "count_tokens":  # one endpoint for every model; the model stays in the body
            return self.prefix + "count-tokens:rawPredict"
        return Vertex.path(self, operation, model, stream)

    def build_request(
        self, prov: ProviderTarget, operation: str, model: str, stream: bool, body: dict[str, Any],
        client_headers: Mapping[str, str], url_model: str | None = None,
    ) -> tuple[str, Headers, bytes]:
        if operation == "count_tokens":
            body["model"] = model
        return Vertex.build_request(self, prov, operation, model, stream, body, client_headers, url_model)


def adapters() -> list[ProviderAdapter]:
    opts = frozenset({"project", "location"})
    return [
        Vertex(
            kind="vertex_gemini", dialect="gemini", paths=GEMINI_SUFFIXES, auth_header="authorization",
            auth_prefix="Bearer ", options=opts, publisher="google",
        ),
        VertexAnthropic(
            kind="vertex_anthropic", dialect="anthropic",
            paths={"messages": ":rawPredict", "messages" + STREAM: ":streamRawPredict", "count_tokens": ""},
            auth_header="authorization", auth_prefix="Bearer ", options=opts, publisher="anthropic",
            forward_headers=frozenset({"anthropic-beta"}), drop_fields=("model",),
        ),
    ]
