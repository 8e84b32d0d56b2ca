"""The wire format of remote usage queries (`ingest.query_endpoint` <-> `ingest.query_remote`).

A request is the `ingest.queries.Query` a builder made: {"sql", "parameters", "settings"}. A response
is {"rows": [[cell, ...], ...]} where a cell is a JSON scalar, except exact decimals and timestamps,
which are tagged objects so that costs stay `Decimal` end to end (a float would round them):
{"$decimal": "0.000123000000"}, {"$datetime": "2026-12-06T01:02:03.000004+00:00"}.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

PATH = "/query/v1"
MAX_BODY = 256 * 1024


def encode_cell(v: Any) -> Any:
    if isinstance(v, Decimal):
        return {"$decimal": format(v, "f")}
    if isinstance(v, datetime):
        return {"$datetime": v.isoformat()}
    if isinstance(v, (list, tuple)):
        return [encode_cell(x) for x in v]
    return v


def decode_cell(v: Any) -> Any:
    if isinstance(v, dict):
        if "$decimal" in v:
            return Decimal(v["$decimal"])
        if "$datetime" in v:
            return datetime.fromisoformat(v["$datetime"])
    if isinstance(v, list):
        return tuple(decode_cell(x) for x in v)
    return v


def encode_rows(rows: Sequence[Sequence[Any]]) -> list[list[Any]]:
    return [[encode_cell(c) for c in r] for r in rows]


def decode_rows(rows: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
    return [tuple(decode_cell(c) for c in r) for r in rows]
