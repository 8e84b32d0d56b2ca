"""The access log: one structured line per proxied request (JSON or logfmt), written in batches.

What it carries: ids (request/event, key, team, user, project, node), dialect, endpoint, requested and served
model, provider, route rule, attempts (deployment:status), status, error class, latency, TTFB, tokens, cost,
bytes and stream flags. Never content, tags, headers or secrets. Lines are buffered and flushed by a short
timer (or when the buffer is large) so the request path does one encode and one list append.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import IO, Any

import orjson

from dataplane.usage_event import RequestRecord

FORMATS = ("json", "logfmt")
FLUSH_S = 0.25
FLUSH_BYTES = 64 * 1024


def _stdout() -> IO[bytes]:
    out = getattr(sys.stdout, "buffer", None)
    return out if out is not None else sys.__stdout__.buffer  # type: ignore[union-attr,return-value]


_NO_KEY = {"key_id": "", "team": "", "user": "", "project": ""}


def fields(rec: RequestRecord, node_id: str, key_fields: dict[int, tuple[object, dict[str, str]]] | None = None,
           ) -> dict[str, Any]:
    """The line's fields. Times in ms with µs resolution, cost in USD. `key_fields` caches the key's ids per
    KeyEntry (it holds the entry, so its id() cannot be reused while cached)."""
    key = rec.key
    if key is None:
        ids = _NO_KEY
    else:
        hit = key_fields.get(id(key)) if key_fields is not None else None
        if hit is not None and hit[0] is key:
            ids = hit[1]
        else:
            ids = {"key_id": key.id, "team": key.team_id, "user": key.user_id, "project": key.project_id}
            if key_fields is not None:
                if len(key_fields) > 100_000:  # old snapshots' keys: let them go
                    key_fields.clear()
                key_fields[id(key)] = (key, ids)
    u = rec.usage
    received = rec.received_s
    fb = rec.first_byte_s
    attempts = rec.attempts
    d = {
        "ts": received, "msg": "access", "request_id": rec.event_id, "node": node_id, **ids,
        "dialect": rec.dialect, "endpoint": rec.endpoint, "requested_model": rec.requested_model[:200],
        "model": rec.model, "provider": rec.provider, "route": rec.route_rule, "status": rec.status,
        "error": rec.error_class, "latency_ms": int((rec.done_s - received) * 1e6) / 1000 if rec.done_s else 0,
        "ttfb_ms": int((fb - received) * 1e6) / 1000 if fb else 0, "attempts": len(attempts),
        "route_attempts": f"{attempts[0].deployment}:{attempts[0].status}" if len(attempts) == 1 else
        ",".join([f"{a.deployment}:{a.status}" for a in attempts]),
        "stream": rec.stream, "input_tokens": u.input_tokens, "output_tokens": u.output_tokens,
        "cost_usd": rec.cost_pico / 1e12, "bytes_in": rec.request_bytes, "bytes_out": rec.response_bytes,
        "client_disconnected": rec.client_disconnected, "policy_version": rec.policy_version,
    }
    return d


def _logfmt_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    s = str(v)
    if s and not any(c in s for c in ' "=\\\n'):
        return s
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def encode_json(d: dict[str, Any]) -> bytes:
    return orjson.dumps(d) + b"\n"


def encode_logfmt(d: dict[str, Any]) -> bytes:
    return (" ".join(f"{k}={_logfmt_value(v)}" for k, v in d.items()) + "\n").encode()


ENCODERS: dict[str, Callable[[dict[str, Any]], bytes]] = {"json": encode_json, "logfmt": encode_logfmt}


class AccessLog:
    def __init__(self, fmt: str, node_id: str, stream: IO[bytes] | None = None) -> None:
        if fmt not in ENCODERS:
            raise ValueError(f"access log format must be one of {', '.join(FORMATS)}, not {fmt!r}")
        self._encode = ENCODERS[fmt]
        self._node_id = node_id
        self._stream = stream if stream is not None else _stdout()
        self._key_fields: dict[int, tuple[object, dict[str, str]]] = {}
        self._buf: list[bytes] = []
        self._size = 0
        self._timer: asyncio.TimerHandle | None = None

    def write(self, rec: RequestRecord) -> None:
        line = self._encode(fields(rec, self._node_id, self._key_fields))
        self._buf.append(line)
        self._size += len(line)
        if self._size >= FLUSH_BYTES:
            self.flush()
        elif self._timer is None:
            try:
                self._timer = asyncio.get_running_loop().call_later(FLUSH_S, self.flush)
            except RuntimeError:  # no loop (a synchronous caller): write now
                self.flush()

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._buf:
            return
        data, self._buf, self._size = b"".join(self._buf), [], 0
        try:
            self._stream.write(data)
            self._stream.flush()
        except (OSError, ValueError):  # a closed or broken stdout must not take the node down
            pass
