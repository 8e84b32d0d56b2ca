"""Composing translators through a pivot API (e.g. Gemini client -> OpenAI chat -> Anthropic provider),
so each rule is written once. The request runs outer then inner; responses and streams run back."""

from __future__ import annotations

from typing import Any

from .base import Event, EventTranslator, Params, Session, Translator


class ChainedEvents:
    """Feeds each event the provider-side stage produces into the client-side stage."""

    __slots__ = ("_client_side", "_provider_side")

    def __init__(self, provider_side: EventTranslator, client_side: EventTranslator) -> None:
        self._provider_side = provider_side
        self._client_side = client_side

    def feed(self, name: str | None, data: Any) -> list[Event]:
        out: list[Event] = []
        for n, d in self._provider_side.feed(name, data):
            out += self._client_side.feed(n, d)
        return out


class _ChainedSession:
    __slots__ = ("_inner", "_outer")

    def __init__(self, outer: Session, inner: Session) -> None:
        self._outer = outer  # client API -> pivot API
        self._inner = inner  # pivot API -> provider API

    def request(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._inner.request(self._outer.request(body))

    def response(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._outer.response(self._inner.response(body))

    def stream(self) -> EventTranslator:
        return ChainedEvents(self._inner.stream(), self._outer.stream())


class Chained:
    """client -> provider through `outer` (client -> pivot) then `inner` (pivot -> provider)."""

    def __init__(self, outer: Translator, inner: Translator) -> None:
        assert (outer.provider, outer.operation) == (inner.client, inner.client_operation), "chain through one API"
        self._outer = outer
        self._inner = inner
        self.client = outer.client
        self.client_operation = outer.client_operation
        self.provider = inner.provider
        self.operation = inner.operation

    def open(self, params: Params) -> Session:
        return _ChainedSession(self._outer.open(params), self._inner.open(params))
