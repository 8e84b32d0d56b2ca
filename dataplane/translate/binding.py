"""What proxy.py uses: one request's translation bound to its client and provider dialects.

The provider's own stream scanner still reads the upstream bytes first, so the usage a usage event
records is the provider's real report, not our translation of it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import orjson

from dataplane.dialects.base import Dialect, ErrorKind, Event, StreamUsageScanner, WireAPI, WrappingScanner
from dataplane.dialects.client_errors import GatewayError, bad_request
from dataplane.providers.base import ProviderAdapter

from .base import EventTranslator, Params, Session, Translator, Untranslatable
from .count_tokens import COUNT, CountTranslation, bind_count
from .provider_errors import error_kind, provider_error_message
from .sse import EventParser

Writer = Callable[[list[Event]], bytes]  # Dialect.write_events

# A body of the right JSON kind can still hold a wrong type anywhere (a number where a list of blocks
# belongs...). Translators look fields up without re-validating each one; what that raises is turned
# into a clear error here, once, instead of a 500.
_SHAPE_ERRORS = (AttributeError, TypeError, KeyError, IndexError, ValueError)

class TranslatingScanner(WrappingScanner):
    """A StreamUsageScanner for the relay: provider bytes in, client-dialect SSE bytes out."""

    __slots__ = ("_events", "_parser", "_write")

    def __init__(self, scanner: StreamUsageScanner, events: EventTranslator, write: Writer) -> None:
        super().__init__(scanner)
        self._parser = EventParser()
        self._events = events
        self._write = write

    def feed(self, chunk: bytes) -> bytes:
        self._scanner.feed(chunk)
        out = []
        try:
            for name, data in self._parser.feed(chunk):
                out += self._events.feed(name, data)
        except _SHAPE_ERRORS as exc:  # the relay reports it in-stream, in the client's dialect
            raise GatewayError(502, ErrorKind.UPSTREAM, "the provider sent a stream event this gateway cannot "
                               f"translate ({type(exc).__name__}); the answer is incomplete") from exc
        return self._write(out) if out else b""


class Translation:
    __slots__ = ("_session", "_strip_usage_option", "_write", "client", "operation", "provider")

    def __init__(self, t: Translator, session: Session, client: Dialect, provider: WireAPI, write: Writer,
                 strip_usage_option: bool = False) -> None:
        self._session = session
        self._write = write
        # Translators ask OpenAI-style providers for stream usage; some (Mistral) refuse the option and
        # always send usage anyway: the adapter says which.
        self._strip_usage_option = strip_usage_option
        self.client = client
        self.provider = provider
        self.operation = t.operation

    def request(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            out = self._session.request(body)
        except _SHAPE_ERRORS as exc:
            raise Untranslatable(f"the request body does not have the shape the {self.client.family} API defines "
                                 "(a field holds an unexpected type); check it against the API reference") from exc
        if self._strip_usage_option:
            out.pop("stream_options", None)
        return out

    def response(self, status: int, payload: bytes) -> bytes:
        """The provider's complete (non-stream) answer, in the client's dialect: success or error."""
        if status == 200:
            try:
                body = orjson.loads(payload)
            except orjson.JSONDecodeError:
                body = None
            if isinstance(body, dict):
                try:
                    return orjson.dumps(self._session.response(body))
                except _SHAPE_ERRORS:
                    pass
            return self.client.error_body(502, ErrorKind.UPSTREAM, "the provider's response could not be translated")
        return self.client.error_body(status, error_kind(status), provider_error_message(payload))

    def scanner(self) -> TranslatingScanner:
        return TranslatingScanner(self.provider.stream_scanner(False), self._session.stream(), self._write)


class Translations:
    """The registry: (client family, client operation, provider family) -> translator. Built once per node."""

    def __init__(self, translators: Mapping[tuple[str, str, str], Translator], providers: Mapping[str, WireAPI]) -> None:
        """`providers`: by family, the API that reads a provider's answers (usage, stream scanning)."""
        self._translators = translators
        self._providers = providers

    def pairs(self) -> list[tuple[str, str, str]]:
        return sorted(self._translators)

    def needed(self, client: Dialect, operation: str, adapter: ProviderAdapter) -> bool:
        """Another API family, or the same family without this API (a chat-only server for a Responses client)."""
        if adapter.dialect != client.family:
            return True
        if operation == COUNT:  # the same API without a counting endpoint: counted here
            return COUNT not in adapter.paths
        return operation not in adapter.paths and (client.family, operation, adapter.dialect) in self._translators

    def bind(self, client: Dialect, operation: str, adapter: ProviderAdapter,
             params: Params) -> Translation | CountTranslation:
        """`operation`: the client endpoint's (Endpoint.operation), since one family has several APIs."""
        provider_dialect = adapter.dialect
        params = replace(params, provider_kind=adapter.kind)
        if operation == COUNT:
            return bind_count(self._translators, self._providers, client, adapter, params)
        t = self._translators.get((client.family, operation, provider_dialect))
        provider = self._providers.get(provider_dialect)
        if t is None or provider is None:
            raise bad_request(
                f"model {params.client_model!r} is served by a provider speaking the {provider_dialect} API, and "
                f"{client.family} {operation!r} requests cannot be translated to it; use a model of a {client.family} provider")
        strip = provider_dialect == "openai" and not adapter.needs_usage_option
        return Translation(t, t.open(params), client, provider, client.write_events, strip)
