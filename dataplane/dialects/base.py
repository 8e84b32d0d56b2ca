"""What every dialect provides. Pure code: bytes and dicts in, values out, no I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

# A stream event between translation stages and dialect writers: (SSE event name or None, parsed JSON data or DONE).
DONE = "[DONE]"
Event = tuple[str | None, Any]
# [(model name, owning provider)] a key may request, sorted: what a model list is rendered from
Models = Sequence[tuple[str, str]]


@dataclass(slots=True)
class Usage:
    """Token classes as billed. input_tokens counts every input token; cached_input_tokens (cache reads),
    the cache writes and audio_input_tokens are subsets of it. output_tokens counts every output token;
    reasoning and audio_output_tokens are subsets. Field mapping per dialect: docs/cost.md."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    reasoning_tokens: int = 0
    reported: bool = False  # the provider's final figure (vs. partial, or estimated by us)
    cache_write_5m_tokens: int = 0  # prompt-cache writes at the default (5-minute) TTL
    cache_write_1h_tokens: int = 0  # prompt-cache writes with a 1-hour TTL
    audio_input_tokens: int = 0
    audio_output_tokens: int = 0


class StreamUsageScanner(Protocol):
    """Fed every upstream SSE byte chunk in order; accumulates usage without parsing every event."""

    usage: Usage

    @property
    def events(self) -> int:
        """Number of SSE data events seen so far (the output estimate when usage never arrives)."""
        ...

    def feed(self, chunk: bytes) -> bytes:
        """Account for `chunk` and return the bytes to forward to the client (usually `chunk` itself)."""
        ...


class WrappingScanner:
    """Base of scanners that transform the bytes around an inner StreamUsageScanner (wire decoding,
    translation): usage and the event count are the inner scanner's. Subclasses implement `feed`."""

    __slots__ = ("_scanner",)

    def __init__(self, scanner: StreamUsageScanner) -> None:
        self._scanner = scanner

    @property
    def usage(self) -> Usage:
        return self._scanner.usage

    @usage.setter
    def usage(self, value: Usage) -> None:
        self._scanner.usage = value

    @property
    def events(self) -> int:
        return self._scanner.events


@dataclass(frozen=True, slots=True)
class EndpointSpec:
    """One client-facing endpoint a dialect serves. `operation` is the provider adapter path key ("chat",
    "messages", "count_tokens"); `path` is exact, or a template (shown in events) for `Dialect.match`."""

    method: str
    path: str
    operation: str


class WireAPI(Protocol):
    """How one API's bodies and streams read: what the gateway needs from a provider's API too.

    `name` is unique (the registry key). `family` is the API family a provider must speak to serve it without
    translation ("openai", "anthropic", "gemini"): several dialects can share one (OpenAI chat and Responses).
    Translators, request validation and usage events speak of families."""

    name: str
    family: str

    def requested_model(self, path: str, body: dict[str, Any]) -> str | None:
        """The model the client asked for: from the body, or the URL for APIs that address it there."""
        ...

    def wants_stream(self, path: str, body: dict[str, Any]) -> bool: ...

    def error_body(self, status: int, kind: str, message: str) -> bytes:
        """`kind` is a dialect-neutral error class (see ErrorKind)."""
        ...

    def stream_error_event(self, kind: str, message: str) -> bytes: ...

    def usage_from_body(self, body: dict[str, Any]) -> Usage: ...

    def stream_scanner(self, strip_usage: bool = False) -> StreamUsageScanner:
        """strip_usage: the gateway asked the provider for usage the client did not; hide it from the client."""
        ...

    def max_output_tokens(self, body: dict[str, Any]) -> int | None: ...


class ClientTranslator(Protocol):
    """A translator a dialect brings to reach providers of another family (the whole protocol, with typed
    params and session, is dataplane/translate/base.Translator; dialects do not import translate)."""

    client: str  # the dialect's family
    client_operation: str  # its EndpointSpec.operation
    provider: str  # the provider family reached
    operation: str  # the provider adapter's path key

    def open(self, params: Any) -> Any: ...


class Dialect(WireAPI, Protocol):
    """One client-facing wire API, and everything the gateway needs to serve it: its endpoints, how a request
    names its model and asks for a stream, its error, stream and model-list shapes and its rate-limit headers.
    Registered in dataplane/dialects/registry.py; the router, refusals and model lists read only this."""

    key_in_query: bool  # the API lets clients send the key as ?key= (elsewhere it would land in access logs)
    models_paths: tuple[str, ...]  # GET these (and {path}/{id}) list the models; () = no listing of its own

    def endpoints(self) -> Sequence[EndpointSpec]:
        """Every endpoint: exact paths are looked up directly, templated ones ("{" in the path) through `match`."""
        ...

    def match(self, method: str, path: str) -> EndpointSpec | None:
        """The templated endpoint (one of `endpoints()`) serving a path no exact endpoint has."""
        ...

    def claims(self, path: str, headers: Mapping[str, str] | None, query: str) -> bool:
        """Whether a request that matched no endpoint (a listing, a 404) looks like this API's."""
        ...

    def reject(self, path: str, query: str) -> str | None:
        """Why a request to one of its endpoints cannot be served as asked (checked before the proxy)."""
        ...

    def unknown_method(self, method: str, path: str) -> str | None:
        """A 404 message for a path this API would use for a method the gateway does not serve."""
        ...

    def write_events(self, events: list[Event]) -> bytes:
        """Translated stream events in this API's SSE framing."""
        ...

    def model_entry(self, name: str, owner: str) -> dict[str, Any]:
        """One model as GET {models_path}/{id} returns it."""
        ...

    def model_list(self, models: Models) -> bytes:
        """GET {models_path}: the whole list."""
        ...

    def rate_limit_headers(self, dim: str, limit: int, remaining: int, reset_ms: int,
                           wait_s: float) -> list[tuple[str, str]]:
        """The rate-limit headers this API's SDKs read, for a 429 on `dim` ("requests" or "tokens")."""
        ...

    def translators(self) -> Sequence[ClientTranslator]:
        """Translators to provider families, for a family no built-in translator serves (a new API no
        provider speaks); the built-in families' are in dataplane/translate/registry.py."""
        ...


class ClientAPI:
    """Defaults of the optional parts of a Dialect: exact endpoints only, claims nothing, rejects nothing."""

    __slots__ = ()
    key_in_query = False
    models_paths: tuple[str, ...] = ()

    def match(self, method: str, path: str) -> EndpointSpec | None:
        return None

    def claims(self, path: str, headers: Mapping[str, str] | None, query: str) -> bool:
        return False

    def reject(self, path: str, query: str) -> str | None:
        return None

    def unknown_method(self, method: str, path: str) -> str | None:
        return None

    def translators(self) -> Sequence[ClientTranslator]:
        return ()


class ModelInBody(ClientAPI):
    """`requested_model` / `wants_stream` of the APIs that name the model and the stream flag in the body
    (OpenAI chat and Responses, Anthropic); Gemini addresses both in the URL instead."""

    __slots__ = ()

    def requested_model(self, path: str, body: dict[str, Any]) -> str | None:
        model = body.get("model")
        return model if isinstance(model, str) and model else None

    def wants_stream(self, path: str, body: dict[str, Any]) -> bool:
        return body.get("stream") is True


class ErrorKind:
    """Dialect-neutral error classes; each dialect maps them to its own `type` strings."""

    INVALID_REQUEST = "invalid_request"
    AUTHENTICATION = "authentication"
    PERMISSION = "permission"
    NOT_FOUND = "not_found"
    TOO_LARGE = "request_too_large"
    RATE_LIMIT = "rate_limit"
    BUDGET = "budget_exceeded"  # a spend cap is reached (HTTP 402)
    UPSTREAM = "upstream_error"
    OVERLOADED = "overloaded"
    TIMEOUT = "timeout"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"
