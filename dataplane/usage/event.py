"""The mutable per-request record that becomes one UsageEvent when the request ends."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Mapping
from typing import Any

from dataplane.dialects.base import Usage
from dataplane.policy_types import KeyEntry
from dataplane.pricing import Price
from dataplane.routing.report import AttemptRecord
from dataplane.usage.event_builder import column_defaults, event_builder
from interlock_contracts.usage_schema import usage_schema
from interlock_contracts.v1 import usage_pb2


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
    __slots__: tuple[str, ...] = (
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
    # plain columns (copied as is into the event) that __init__ does not set up by name: slots and defaults
    _COLUMNS = column_defaults(usage_schema(), __slots__)
    __slots__ += tuple(attr for attr, _ in _COLUMNS)

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
        for attr, default in self._COLUMNS:
            setattr(self, attr, default)

    def to_event(self, node_id: str) -> usage_pb2.UsageEvent:
        return _BUILD(self, node_id)


_BUILD = event_builder(usage_schema(), usage_pb2.UsageEvent)  # generated once from the usage schema


