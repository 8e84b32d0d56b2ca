"""AWS Bedrock runtime: `{base_url}/model/{modelId}/{action}` signed with SigV4 (service `bedrock`).

Two kinds:
  * bedrock_anthropic: InvokeModel for Anthropic models (Anthropic dialect; body with
    `anthropic_version: bedrock-2023-05-31`, no `model`/`stream`; betas move from the header into
    `anthropic_beta`). Streams (`invoke-with-response-stream`) are AWS event-stream, decoded to Anthropic SSE.
  * bedrock: the Converse API (`/converse`, `/converse-stream`), its own `bedrock_converse` dialect;
    clients' OpenAI/Anthropic requests are translated (dataplane/translate/bedrock_converse*).

base_url: `https://bedrock-runtime.{region}.amazonaws.com`. Options: `region` (required for SigV4) and
`auth`: `sigv4` (default; the credential holds AKID/secret[/session token], see sigv4.parse_credentials)
or `api_key` (a Bedrock API key sent as a bearer token).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from .base import (
    Headers,
    ProviderAdapter,
    ProviderConfigError,
    ProviderTarget,
    StreamDecoder,
    anthropic_error,
    error_message,
)
from .eventstream import EventStreamToSSE
from .model_path import STREAM, ModelInPath
from .sigv4 import SigV4Signer, parse_credentials

BEDROCK_ANTHROPIC_VERSION = "bedrock-2023-05-31"
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")


@dataclass(frozen=True, slots=True)
class Bedrock(ModelInPath):
    clock: Callable[[], float] = time.time
    signer: SigV4Signer | None = field(default=None, repr=False)
    unwrap_chunks: bool = False  # InvokeModel streams wrap each model event in a base64 `chunk`

    def bind(self, options: Mapping[str, str], secret: str | None) -> ProviderAdapter:
        ProviderAdapter.bind(self, options, secret)
        auth = options.get("auth", "sigv4")
        if auth == "api_key":
            return replace(self, auth_header="authorization", auth_prefix="Bearer ", signer=None)
        if auth != "sigv4":
            raise ProviderConfigError(f"auth must be 'sigv4' or 'api_key', not {auth!r}")
        region = options.get("region", "")
        if not _REGION.match(region):
            raise ProviderConfigError(f"options.region must be an AWS region such as us-east-1, got {region!r}")
        if not secret:  # the provider is already marked unavailable for the missing credential
            return self
        return replace(self, signer=SigV4Signer(parse_credentials(secret), region, "bedrock", self.clock))

    def auth_headers(self, secret: str | None) -> tuple[tuple[str, str], ...]:
        # SigV4 puts the credential in a per-request signature, never in a static header.
        return ProviderAdapter.auth_headers(self, secret) if self.auth_header else ()

    def build_request(
        self, prov: ProviderTarget, operation: str, model: str, stream: bool, body: dict[str, Any],
        client_headers: Mapping[str, str], url_model: str | None = None,
    ) -> tuple[str, Headers, bytes]:
        url = prov.base_url + self.path(operation, self.url_model(model) if url_model is None else url_model, stream)
        payload = orjson.dumps(body)
        headers = list(prov.headers)
        if self.signer is not None:
            headers = self.signer.sign("POST", url, headers, payload)
        return url, headers, payload

    def stream_decoder(self) -> StreamDecoder | None:
        return EventStreamToSSE(unwrap_chunks=self.unwrap_chunks)

    def error_payload(self, status: int, payload: bytes) -> bytes | None:
        # AWS answers {"message": ...} (type in the x-amzn-ErrorType header); Anthropic clients expect
        # their error shape, and translated routes read error.message from it.
        msg = error_message(payload)
        return anthropic_error(status, f"Bedrock: {msg}" if msg else f"Bedrock returned HTTP {status}")


@dataclass(frozen=True, slots=True)
class BedrockAnthropic(Bedrock):
    def build_request(
        self, prov: ProviderTarget, operation: str, model: str, stream: bool, body: dict[str, Any],
        client_headers: Mapping[str, str], url_model: str | None = None,
    ) -> tuple[str, Headers, bytes]:
        body["anthropic_version"] = BEDROCK_ANTHROPIC_VERSION
        betas = client_headers.get("anthropic-beta")
        if betas and "anthropic_beta" not in body:  # Bedrock takes betas in the body, not as a header
            body["anthropic_beta"] = [b.strip() for b in betas.split(",") if b.strip()]
        return Bedrock.build_request(self, prov, operation, model, stream, body, client_headers, url_model)


def adapters(clock: Callable[[], float] = time.time) -> list[ProviderAdapter]:
    opts = frozenset({"region", "auth"})
    return [
        BedrockAnthropic(
            kind="bedrock_anthropic", dialect="anthropic", prefix="/model/", auth_header="", options=opts,
            paths={"messages": "/invoke", "messages" + STREAM: "/invoke-with-response-stream"},
            clock=clock, unwrap_chunks=True,
        ),
        Bedrock(
            kind="bedrock", dialect="bedrock_converse", prefix="/model/", auth_header="", options=opts,
            paths={op + s: p for op in ("chat", "messages", "converse")
                   for s, p in (("", "/converse"), (STREAM, "/converse-stream"))},
            clock=clock,
        ),
    ]
