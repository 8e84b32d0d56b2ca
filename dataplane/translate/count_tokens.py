"""Token counting across APIs: Anthropic count_tokens, Gemini countTokens and OpenAI's
/v1/responses/input_tokens, served by whichever provider serves the model.

A provider with its own counting endpoint gets the request translated to it (the client's count body
-> a generation request of the client's API -> that generation translated to the provider's API, with
the existing translators -> the provider's count body); its answer comes back in the client's shape.
A provider without one (OpenAI-compatible servers, Bedrock Converse) is not called: the gateway
answers with a conservative local estimate, marked in the `x-interlock-token-count` header and in
the usage event. Registries keyed by API family; pure code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson

from dataplane.dialects.base import Dialect, StreamUsageScanner, WireAPI
from dataplane.dialects.client_errors import bad_request
from dataplane.dialects.usage_fields import count
from dataplane.providers.base import ProviderAdapter

from .base import Params, Session, Translator, Untranslatable
from .provider_errors import error_kind, provider_error_message

COUNT = "count_tokens"  # the Endpoint.operation of every counting endpoint, whatever the API
COUNT_HEADER = "x-interlock-token-count"  # "provider" or "estimated"
ESTIMATE_BYTES_PER_TOKEN = 3  # real tokenizers average ~4 bytes of JSON per token: 3 over-counts, never under

# the client family's generation operation, whose translators carry a count request across
GENERATION_OP = {"anthropic": "messages", "gemini": "generate", "openai": "responses"}

_ANTHROPIC_COUNT_FIELDS = ("model", "messages", "system", "tools", "tool_choice", "thinking")
_GEMINI_COUNT_FIELDS = ("contents", "systemInstruction", "tools", "toolConfig", "generationConfig", "cachedContent")


def _anthropic_generation(body: dict[str, Any]) -> dict[str, Any]:
    return {**body, "max_tokens": body.get("max_tokens") or 1}  # count_tokens has no max_tokens; messages needs one


def _gemini_generation(body: dict[str, Any]) -> dict[str, Any]:
    inner = body.get("generateContentRequest")  # countTokens takes {contents} or {generateContentRequest}
    return dict(inner) if isinstance(inner, dict) else {k: v for k, v in body.items() if k != "model"}


# client family: its count body -> a generation body of the same API
AS_GENERATION: Mapping[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "anthropic": _anthropic_generation, "gemini": _gemini_generation, "openai": dict,
}

# provider family: a generation body of its API -> its count body (families with a counting endpoint)
PROVIDER_COUNT_BODY: Mapping[str, Callable[[dict[str, Any], str], dict[str, Any]]] = {
    "anthropic": lambda gen, upstream: {k: gen[k] for k in _ANTHROPIC_COUNT_FIELDS if k in gen},
    "gemini": lambda gen, upstream: {"generateContentRequest": {
        "model": f"models/{upstream}", **{k: gen[k] for k in _GEMINI_COUNT_FIELDS if k in gen}}},
}

# provider family: its count answer -> the number
READ_COUNT: Mapping[str, Callable[[Any], int]] = {
    "anthropic": lambda b: count(b.get("input_tokens")),
    "gemini": lambda b: count(b.get("totalTokens")),
    "openai": lambda b: count(b.get("input_tokens")),
}

# client family: the number -> its count answer
CLIENT_COUNT: Mapping[str, Callable[[int], dict[str, Any]]] = {
    "anthropic": lambda n: {"input_tokens": n},
    "gemini": lambda n: {"totalTokens": n},
    "openai": lambda n: {"object": "response.input_tokens", "input_tokens": n},
}


def counted(family: str, payload: bytes) -> int:
    """The count in a provider's (or native) counting answer; 0 when it holds none."""
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return 0
    read = READ_COUNT.get(family)
    return read(body) if read is not None and isinstance(body, dict) else 0


def estimate(body: dict[str, Any]) -> int:
    """Conservative local count: the request's JSON bytes over ESTIMATE_BYTES_PER_TOKEN, rounded up."""
    return -(-len(orjson.dumps(body)) // ESTIMATE_BYTES_PER_TOKEN)


def has_endpoint(adapter: ProviderAdapter) -> bool:
    return COUNT in adapter.paths and adapter.dialect in PROVIDER_COUNT_BODY


class CountTranslation:
    """A count request bound to its client API and the serving provider. `local`: the provider has no
    counting endpoint, answer with `estimate_answer` instead of calling it."""

    __slots__ = ("_session", "client", "local", "operation", "provider", "upstream")

    def __init__(self, client: Dialect, provider: WireAPI, session: Session | None, local: bool, upstream: str) -> None:
        self.client = client
        self.provider = provider
        self._session = session
        self.local = local
        self.operation = COUNT
        self.upstream = upstream

    def request(self, body: dict[str, Any]) -> dict[str, Any]:
        if self.local:
            return body
        try:
            gen = AS_GENERATION[self.client.family](body)
            if self._session is not None:
                gen = self._session.request(gen)
            return PROVIDER_COUNT_BODY[self.provider.family](gen, self.upstream)
        except (AttributeError, TypeError, KeyError, IndexError, ValueError) as exc:
            raise Untranslatable(f"the count request does not have the shape the {self.client.family} API defines "
                                 "(a field holds an unexpected type); check it against the API reference") from exc

    def response(self, status: int, payload: bytes) -> bytes:
        if status != 200:
            return self.client.error_body(status, error_kind(status), provider_error_message(payload))
        return orjson.dumps(CLIENT_COUNT[self.client.family](counted(self.provider.family, payload)))

    def scanner(self) -> StreamUsageScanner:
        raise bad_request("token counting answers once; it does not stream (drop \"stream\" from the request)")

    def estimate_answer(self, body: dict[str, Any]) -> tuple[bytes, int]:
        n = estimate(body)
        return orjson.dumps(CLIENT_COUNT[self.client.family](n)), n


def bind_count(translators: Mapping[tuple[str, str, str], Translator], providers: Mapping[str, WireAPI],
               client: Dialect, adapter: ProviderAdapter, params: Params) -> CountTranslation:
    provider = providers.get(adapter.dialect)
    if client.family not in CLIENT_COUNT or provider is None:
        raise bad_request(f"{client.family} token counting is not served for model {params.client_model!r}")
    session = None
    local = not has_endpoint(adapter)
    if not local and adapter.dialect != client.family:
        t = translators.get((client.family, GENERATION_OP[client.family], adapter.dialect))
        if t is None:
            local = True  # no way to say this request in the provider's API: count it here
        else:
            session = t.open(params)
    return CountTranslation(client, provider, session, local, params.upstream_model)

