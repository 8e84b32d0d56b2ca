"""The mutable per-request record that becomes one UsageEvent when the request ends."""

from __future__ import annotations

import itertools
import os
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from dataplane.dialects.base import Usage
from dataplane.policy import KeyEntry
from dataplane.pricing import Price, format_usd
from dataplane.routing.report import AttemptRecord
from interlock.usage_schema import UsageSchema, usage_schema
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


def column_defaults(schema: UsageSchema, taken: tuple[str, ...]) -> tuple[tuple[str, Any], ...]:
    """(attribute, proto default) for each column the record carries as is but does not set up itself:
    a new such column needs no edit here, only code that sets its value."""
    fields = schema.message.fields_by_name
    return tuple((attr, () if fields[f].is_repeated else fields[f].default_value)  # never share a mutable default
                 for f, attr in schema.sourced() if attr not in taken)


_OWN_SLOTS = (
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
_COLUMN_DEFAULTS = column_defaults(usage_schema(), _OWN_SLOTS)


class RequestRecord:
    __slots__ = (*_OWN_SLOTS, *(attr for attr, _ in _COLUMN_DEFAULTS))

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
        for attr, default in _COLUMN_DEFAULTS:
            setattr(self, attr, default)

    def to_event(self, node_id: str) -> usage_pb2.UsageEvent:
        return _BUILD(self, node_id)


# The fields computed here; every other field is copied from where the schema's `source` says.
_COMPUTED = """
        received_unix_us=int(r0 * 1e6), first_byte_unix_us=int(rec.first_byte_s * 1e6),
        done_unix_us=int(rec.done_s * 1e6), node_id=node_id, cost_usd=format_usd(rec.cost_pico),
        usage_estimated=not u.reported and (u.input_tokens + u.output_tokens) > 0,
        latency_ms=int((rec.done_s - r0) * 1000) if rec.done_s else 0,
        ttfb_ms=int((rec.first_byte_s - r0) * 1000) if rec.first_byte_s else 0, fallback=len(rec.attempts) > 1,
        guardrail_outcome=dumps(rec.guardrails).decode() if rec.guardrails else "","""


def event_builder(schema: UsageSchema, message: Callable[..., Any]) -> Callable[[RequestRecord, str], Any]:
    """`(record, node_id) -> message`, generated once from the schema (as dataclasses generate __init__):
    a keyword call written out costs what the hand-written one did, a loop over the schema per request
    would not."""
    unbuilt = {f.name for f in schema.message.fields} - {f for f, _ in schema.sourced()} - {
        f for f, _ in schema.sourced("usage.")} - {f for f, _ in schema.sourced("key.")} - set(
        re.findall(r"(\w+)=(?!=)", _COMPUTED)) - {"attempts"}
    if unbuilt:
        raise ValueError(f"{schema.message.full_name} fields {sorted(unbuilt)} have no source in the usage schema "
                         "(interlock/usage_schema.py) and are not computed by the event builder")
    if bad := [p for f, p in schema.sourced() + schema.sourced("usage.") + schema.sourced("key.")
               if not (f.isidentifier() and all(part.isidentifier() for part in p.split(".")))]:
        raise ValueError(f"usage schema sources {bad} are not attribute names")
    default = {f.name: f.default_value for f in schema.message.fields}
    plain = [f"{f}=rec.{p}," for f, p in schema.sourced()] + [f"{f}=u.{p}," for f, p in schema.sourced("usage.")]
    plain += [f"{f}=key.{p} if key is not None else {default[f]!r}," for f, p in schema.sourced("key.")]
    source = ("def build(rec, node_id):\n    u = rec.usage\n    key = rec.key\n    r0 = rec.received_s\n"
              f"    ev = message({_COMPUTED}\n        {' '.join(plain)}\n    )\n"
              "    for a in rec.attempts:  # add() builds in place: a list argument would build, then copy each\n"
              "        ev.attempts.add(provider=a.provider, deployment=a.deployment, upstream_model=a.upstream_model,\n"
              "                        status=a.status, error_class=a.error_class, latency_ms=a.latency_ms)\n"
              "    return ev\n")
    scope: dict[str, Any] = {"message": message, "format_usd": format_usd, "dumps": orjson.dumps}
    exec(compile(source, f"<usage event builder {schema.message.full_name}>", "exec"), scope)
    build: Callable[[RequestRecord, str], Any] = scope["build"]
    build.__doc__ = source
    return build


_BUILD = event_builder(usage_schema(), usage_pb2.UsageEvent)
