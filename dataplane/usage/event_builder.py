"""The usage event built from the request record, generated from the usage schema (interlock_contracts/usage_schema.py).

Fields whose column names a `source` on the record are copied as they are; the few computed ones
(timestamps, cost, latencies, flags) are written out in `_COMPUTED`. A new plain column needs no edit here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import orjson

from dataplane.pricing import format_usd
from interlock_contracts.usage_schema import UsageSchema


def column_defaults(schema: UsageSchema, taken: tuple[str, ...]) -> tuple[tuple[str, Any], ...]:
    """(attribute, proto default) for each column the record carries as is but does not set up itself:
    a new such column needs no edit here, only code that sets its value."""
    fields = schema.message.fields_by_name
    return tuple((attr, () if fields[f].is_repeated else fields[f].default_value)  # never share a mutable default
                 for f, attr in schema.sourced() if attr not in taken)


# The fields computed here; every other field is copied from where the schema's `source` says.
_COMPUTED = """
        received_unix_us=int(r0 * 1e6), first_byte_unix_us=int(rec.first_byte_s * 1e6),
        done_unix_us=int(rec.done_s * 1e6), node_id=node_id, cost_usd=format_usd(rec.cost_pico),
        usage_estimated=not u.reported and (u.input_tokens + u.output_tokens) > 0,
        latency_ms=int((rec.done_s - r0) * 1000) if rec.done_s else 0,
        ttfb_ms=int((rec.first_byte_s - r0) * 1000) if rec.first_byte_s else 0, fallback=len(rec.attempts) > 1,
        guardrail_outcome=dumps(rec.guardrails).decode() if rec.guardrails else "","""


def event_builder(schema: UsageSchema, message: Callable[..., Any]) -> Callable[[Any, str], Any]:
    """`(record, node_id) -> message`, generated once from the schema (as dataclasses generate __init__):
    a keyword call written out costs what the hand-written one did, a loop over the schema per request
    would not."""
    unbuilt = {f.name for f in schema.message.fields} - {f for f, _ in schema.sourced()} - {
        f for f, _ in schema.sourced("usage.")} - {f for f, _ in schema.sourced("key.")} - set(
        re.findall(r"(\w+)=(?!=)", _COMPUTED)) - {"attempts"}
    if unbuilt:
        raise ValueError(f"{schema.message.full_name} fields {sorted(unbuilt)} have no source in the usage schema "
                         "(interlock_contracts/usage_schema.py) and are not computed by the event builder")
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
    build: Callable[[Any, str], Any] = scope["build"]
    build.__doc__ = source
    return build


