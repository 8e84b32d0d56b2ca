"""What a provider adapter provides. Pure: no I/O; the data plane's upstream client does the sending.

Life cycle: the registry holds one adapter per provider kind. When a snapshot is compiled, each
configured provider gets `kind_adapter.bind(options, secret)`, an adapter specialised to that provider
(API version, region, signing credentials...). Per request the proxy calls `prepare_body` (model
rewrite, usage options), then `build_request` (URL, headers, final body bytes, signature) and, for
streams, `stream_decoder()` (provider wire framing -> SSE of `dialect`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from dataplane.dialects.base import StreamUsageScanner, WrappingScanner
from dataplane.dialects.client_errors import bad_request

Headers = list[tuple[str, str]]


class ProviderTarget(Protocol):
    """What an adapter reads from the compiled provider it sends to (dataplane/policy_types.py's RuntimeProvider
    is one, and holds the adapter: so adapters declare this rather than import it)."""

    @property
    def base_url(self) -> str: ...

    @property
    def headers(self) -> tuple[tuple[str, str], ...]: ...


class ProviderConfigError(ValueError):
    """A provider's options or credential do not fit its kind; the node marks that provider unavailable."""


class StreamDecoder(Protocol):
    def feed(self, chunk: bytes) -> bytes:
        """Decode the next upstream bytes; returns the SSE bytes complete so far (possibly b"")."""
        ...


class DecodingScanner(WrappingScanner):
    """A StreamUsageScanner that first turns the provider's wire framing into SSE (see StreamDecoder)."""

    __slots__ = ("_decoder",)

    def __init__(self, decoder: StreamDecoder, scanner: StreamUsageScanner) -> None:
        super().__init__(scanner)
        self._decoder = decoder

    def feed(self, chunk: bytes) -> bytes:
        sse = self._decoder.feed(chunk)
        return self._scanner.feed(sse) if sse else b""


@dataclass(frozen=True, slots=True)
class ProviderAdapter:
    """Configuration of one provider kind.

    dialect: the API dialect the provider speaks natively (requests from clients of
        another dialect need translation).
    paths: operation -> path appended to the provider's base URL.
    auth_header / auth_prefix: how the resolved credential is sent.
    forward_headers: client headers passed through verbatim (lower-case).
    static_headers: always sent.
    needs_usage_option: OpenAI-style servers only report usage in streams when asked to.
    options: the provider `options` this kind accepts (validated by the control plane too).
    """

    kind: str
    dialect: str
    paths: Mapping[str, str]
    auth_header: str
    auth_prefix: str = ""
    credential_required: bool = True
    forward_headers: frozenset[str] = frozenset()
    static_headers: tuple[tuple[str, str], ...] = ()
    needs_usage_option: bool = False
    options: frozenset[str] = frozenset()

    def bind(self, options: Mapping[str, str], secret: str | None) -> ProviderAdapter:
        """The adapter for one configured provider. Called at snapshot-compile time, never per request.

        Raises ProviderConfigError for options or a credential this kind cannot use."""
        unknown = set(options) - self.options
        if unknown:
            raise ProviderConfigError(f"unknown options {sorted(unknown)} for kind {self.kind!r}")
        return self

    def auth_headers(self, secret: str | None) -> tuple[tuple[str, str], ...]:
        if not secret:
            return ()
        return ((self.auth_header, self.auth_prefix + secret),)

    def prepare_body(self, body: dict[str, Any], upstream_model: str, stream: bool, operation: str = "chat") -> bool:
        """Rewrite the client's body for this provider in place (model name, usage reporting).

        Returns True when usage reporting was switched on for us, not the client,
        so the relay must hide the extra usage chunk from the client. Only chat completions take
        stream_options (the Responses API rejects it and always reports usage)."""
        body["model"] = upstream_model
        if stream and self.needs_usage_option and operation == "chat":
            opts = body.get("stream_options")
            if not isinstance(opts, dict):
                opts = {}
                body["stream_options"] = opts
            if opts.get("include_usage") is not True:
                opts["include_usage"] = True
                return True
        return False

    def url_model(self, model: str) -> str:
        """The upstream model name as it goes into a URL path (quoted by kinds that put it there). Computed
        once per model at snapshot swap (RuntimeModel.url_model), not per request."""
        return model

    def path(self, operation: str, model: str, stream: bool) -> str:
        """Path (and query) for an operation; kinds that address the model in the URL override this.
        `model` is already in its URL form (url_model)."""
        path = self.paths.get(operation)
        if path is None:
            raise unsupported(self, operation)
        return path

    def build_request(
        self, prov: ProviderTarget, operation: str, model: str, stream: bool, body: dict[str, Any],
        client_headers: Mapping[str, str], url_model: str | None = None,
    ) -> tuple[str, Headers, bytes]:
        """URL, headers and body bytes for the upstream. `body` is final (in this provider's dialect,
        after prepare_body); signing kinds sign exactly the bytes returned. `url_model`: the model's
        precomputed url_model(model) (the proxy passes RuntimeModel.url_model), else computed here."""
        forwarded = [(h, client_headers[h]) for h in self.forward_headers if h in client_headers]
        headers = _with_forwarded(prov.headers, forwarded, self.static_headers) if forwarded else list(prov.headers)
        path = self.path(operation, self.url_model(model) if url_model is None else url_model, stream)
        return prov.base_url + path, headers, orjson.dumps(body)

    def error_payload(self, status: int, payload: bytes) -> bytes | None:
        """A non-200 body in this provider's own error shape -> the shape of `dialect`; None = as is.
        Only kinds whose errors differ from their dialect's (Bedrock, Vertex) override it."""
        return None

    def stream_decoder(self) -> StreamDecoder | None:
        """None: the upstream already streams SSE of `dialect` (relayed as is)."""
        return None


def _with_forwarded(
    configured: tuple[tuple[str, str], ...], forwarded: list[tuple[str, str]], defaults: tuple[tuple[str, str], ...],
) -> Headers:
    """Each header once: a client's forwarded header replaces the kind's default (anthropic-version) but not a
    header the policy set."""
    default_names = {n for n, _ in defaults}
    by_policy = {n.lower() for n, _ in configured} - default_names
    forwarded = [(h, v) for h, v in forwarded if h not in by_policy]
    names = {h for h, _ in forwarded}
    return [*((n, v) for n, v in configured if n.lower() not in names), *forwarded]


def unsupported(adapter: ProviderAdapter, operation: str) -> Exception:
    return bad_request(f"this model's provider (kind {adapter.kind!r}) does not serve the {operation!r} operation")


_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found_error",
    408: "timeout_error", 413: "request_too_large", 429: "rate_limit_error", 529: "overloaded_error",
}


def anthropic_error(status: int, message: str) -> bytes:
    kind = _ANTHROPIC_ERROR_TYPES.get(status) or ("overloaded_error" if status == 503 else
                                                 "api_error" if status >= 500 else "invalid_request_error")
    return orjson.dumps({"type": "error", "error": {"type": kind, "message": message}})


def error_message(payload: bytes) -> str | None:
    """`message` of AWS ({"message"} / {"Message"}) and Google ({"error": {"message"}}) error bodies."""
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(body, dict):
        return None
    inner = body.get("error")
    msg = inner.get("message") if isinstance(inner, dict) else body.get("message", body.get("Message"))
    return msg if isinstance(msg, str) else None


def is_anthropic_error(payload: bytes) -> bool:
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return False
    return isinstance(body, dict) and body.get("type") == "error"
