"""The mutable per-request record that becomes one UsageEvent when the request ends."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Mapping
from typing import Any

import orjson

from dataplane.dialects.base import Usage
from dataplane.policy import KeyEntry
from dataplane.pricing import Price, format_usd
from dataplane.routing.report import AttemptRecord
from interlock.v1 import usage_pb2


class EventIds:
    """Event ids in a UUIDv7-like layout: 48-bit ms timestamp, 48 random bits per process, 32-bit counter.

    Unique across nodes and restarts (the random part is drawn at start) and sortable
    by time, without a getrandom() syscall per request.
    """

    __slots__ = ("_counter", "_node")

    def __init__(self) -> None:
        self._node = os.urandom(6).hex()
        self._counter = itertools.count(int.from_bytes(os.urandom(4), "big"))

    def next(self, now_s: float) -> str:
        return f"{int(now_s * 1000):012x}{self._node}{next(self._counter) & 0xFFFFFFFF:08x}"


class RequestRecord:
    __slots__ = (
        "alias",
        "attempts",
        "budget",
        "client_disconnected",
        "cost_pico",
        "count_estimated",
        "counted_tokens",
        "dialect",
        "done_s",
        "endpoint",
        "error_class",
        "event_id",
        "first_byte_s",
        "guardrails",
        "key",
        "model",
        "policy_version",
        "price",
        "price_version",
        "provider",
        "received_s",
        "request_bytes",
        "requested_model",
        "response_bytes",
        "route_rule",
        "status",
        "stream",
        "tags",
        "upstream_model",
        "usage",
    )

    def __init__(self, ids: EventIds, dialect: str, endpoint: str, request_bytes: int):
        self.received_s = time.time()
        self.event_id = ids.next(self.received_s)
        self.dialect = dialect
        self.endpoint = endpoint
        self.request_bytes = request_bytes
        self.first_byte_s = 0.0
        self.done_s = 0.0
        self.key: KeyEntry | None = None
        self.tags: Mapping[str, str] = {}
        self.requested_model = self.alias = self.model = self.provider = self.upstream_model = ""
        self.price_version = self.error_class = ""
        self.status = 0
        self.stream = self.client_disconnected = False
        self.usage = Usage()
        self.cost_pico = 0
        self.counted_tokens = 0  # count_tokens: the count answered; count_estimated: ours, not the provider's
        self.count_estimated = False
        self.price: Price | None = None
        self.policy_version = 0
        self.response_bytes = 0
        self.budget: Any = None  # the budget Ticket reserved at admission, settled when the request ends
        self.route_rule = ""  # the routing rule that chose the deployments ("default" = none matched)
        self.attempts: list[AttemptRecord] = []  # every upstream attempt, in order (fallback visible here)
        self.guardrails: list[dict[str, Any]] = []  # guardrail outcomes (ids, rules, counts; never matched text)

    def to_event(self, node_id: str) -> usage_pb2.UsageEvent:
        u = self.usage
        key = self.key
        ms = lambda t: int((t - self.received_s) * 1000) if t else 0  # noqa: E731
        ev = usage_pb2.UsageEvent(
            event_id=self.event_id, received_unix_us=int(self.received_s * 1e6),
            first_byte_unix_us=int(self.first_byte_s * 1e6), done_unix_us=int(self.done_s * 1e6), node_id=node_id,
            key_id=key.id if key else "", team_id=key.team_id if key else "", user_id=key.user_id if key else "",
            project_id=key.project_id if key else "", tags=self.tags, dialect=self.dialect, endpoint=self.endpoint,
            requested_model=self.requested_model, alias=self.alias, provider=self.provider,
            upstream_model=self.upstream_model, model=self.model, status=self.status, error_class=self.error_class,
            input_tokens=u.input_tokens, output_tokens=u.output_tokens, cached_input_tokens=u.cached_input_tokens,
            reasoning_tokens=u.reasoning_tokens, usage_estimated=not u.reported and (u.input_tokens + u.output_tokens) > 0,
            cost_usd=format_usd(self.cost_pico), price_version=self.price_version, latency_ms=ms(self.done_s),
            ttfb_ms=ms(self.first_byte_s), stream=self.stream, client_disconnected=self.client_disconnected,
            policy_version=self.policy_version, request_bytes=self.request_bytes, response_bytes=self.response_bytes,
            route_rule=self.route_rule, fallback=len(self.attempts) > 1,
            cache_write_5m_tokens=u.cache_write_5m_tokens, cache_write_1h_tokens=u.cache_write_1h_tokens,
            audio_input_tokens=u.audio_input_tokens, audio_output_tokens=u.audio_output_tokens,
            counted_tokens=self.counted_tokens, count_estimated=self.count_estimated,
            guardrail_outcome=orjson.dumps(self.guardrails).decode() if self.guardrails else "",
        )
        for a in self.attempts:  # add() builds in place: a constructor list would build then copy each message
            ev.attempts.add(provider=a.provider, deployment=a.deployment, upstream_model=a.upstream_model,
                            status=a.status, error_class=a.error_class, latency_ms=a.latency_ms)
        return ev
