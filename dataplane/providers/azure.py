"""Azure OpenAI (and Azure AI Foundry's OpenAI endpoint).

Two URL styles, picked by `options.api_version`:
  * "v1" (default; Azure's GA v1 API since Aug 2025): `{base}/openai/v1/chat/completions`, the
    deployment name goes in the body's `model`, no api-version parameter.
  * a dated version such as "2024-10-21": the classic deployments API,
    `{base}/openai/deployments/{deployment}/chat/completions?api-version=...` (embeddings likewise;
    the Responses API is not per deployment: `{base}/openai/responses?api-version=...`).
The model's `upstream` name is the deployment name. Auth (`options.auth`): `api_key` (default, the
`api-key` header) or `entra` (an Entra ID access token sent as a bearer token; the credential ref
points at a token the operator keeps fresh, e.g. a file written by a sidecar).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from urllib.parse import quote

from .base import ProviderAdapter, ProviderConfigError, unsupported

_V1_PATHS = {
    "chat": "/openai/v1/chat/completions", "responses": "/openai/v1/responses",
    "embeddings": "/openai/v1/embeddings", "models": "/openai/v1/models",
}
# {d} = deployment; the api-version query is appended at bind time.
_DEPLOYMENT_PATHS = {
    "chat": "/openai/deployments/{d}/chat/completions", "embeddings": "/openai/deployments/{d}/embeddings",
    "responses": "/openai/responses", "models": "/openai/models",
}
_AUTH = {"api_key": ("api-key", ""), "entra": ("authorization", "Bearer ")}


@dataclass(frozen=True, slots=True)
class AzureOpenAI(ProviderAdapter):
    per_deployment: bool = False  # the deployments API: paths hold "{d}" and a fixed ?api-version=

    def bind(self, options: Mapping[str, str], secret: str | None) -> ProviderAdapter:
        ProviderAdapter.bind(self, options, secret)
        auth = options.get("auth", "api_key")
        if auth not in _AUTH:
            raise ProviderConfigError(f"auth must be one of {sorted(_AUTH)}, not {auth!r}")
        header, prefix = _AUTH[auth]
        version = options.get("api_version", "v1")
        if version == "v1":
            return replace(self, auth_header=header, auth_prefix=prefix, paths=_V1_PATHS, per_deployment=False)
        if not version or any(c in version for c in "&?#/ "):
            raise ProviderConfigError(f"api_version {version!r} is not a valid Azure API version (e.g. 2024-10-21 or v1)")
        paths = {op: f"{p}?api-version={version}" for op, p in _DEPLOYMENT_PATHS.items()}
        return replace(self, auth_header=header, auth_prefix=prefix, paths=paths, per_deployment=True)

    def url_model(self, model: str) -> str:
        return quote(model, safe="")

    def path(self, operation: str, model: str, stream: bool) -> str:
        path = self.paths.get(operation)
        if path is None:
            raise unsupported(self, operation)
        return path.replace("{d}", model) if self.per_deployment else path


def adapters() -> list[ProviderAdapter]:
    return [
        AzureOpenAI(
            kind="azure_openai", dialect="openai", paths=_V1_PATHS, auth_header="api-key",
            needs_usage_option=True,  # stream_options.include_usage: GA since api-version 2024-10-21
            options=frozenset({"api_version", "auth"}),
        ),
    ]
