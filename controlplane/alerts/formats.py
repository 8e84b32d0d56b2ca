"""What each destination kind receives: a registry of request builders (no branching on kind elsewhere).

- webhook: the event as JSON, signed: `X-Interlock-Signature: t=<unix s>,v1=<hex HMAC-SHA256(key, "<t>.<body>")>`
  (verify the MAC, then reject a t older than a few minutes: a replay). `X-Interlock-Event-Id` = the dedup key.
- slack: an incoming-webhook message {"text": ...}.
- pagerduty: Events API v2 `trigger` with dedup_key (PagerDuty collapses repeats itself).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import asdict, dataclass

import orjson

from .events import AlertEvent

PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"
SIGNATURE_HEADER = "x-interlock-signature"
_EMOJI = {"info": ":information_source:", "warning": ":warning:", "critical": ":rotating_light:"}


@dataclass(frozen=True)
class Target:
    """A destination with its secrets resolved (never logged or stored)."""

    id: str
    kind: str
    url: str
    secret: str = ""


@dataclass(frozen=True)
class Outgoing:
    url: str
    headers: dict[str, str]
    body: bytes


def sign(secret: str, ts: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), str(ts).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={ts},v1={mac}"


def verify(secret: str, header: str, body: bytes) -> int | None:
    """The signed timestamp if `header` is a valid signature of `body`, else None (for receivers and tests)."""
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        ts = int(parts["t"])
    except (ValueError, KeyError):
        return None
    return ts if hmac.compare_digest(sign(secret, ts, body), header) else None


def _webhook(t: Target, ev: AlertEvent, now_s: int) -> Outgoing:
    body = orjson.dumps({"id": ev.dedup_key, **asdict(ev)})
    headers = {"content-type": "application/json", "x-interlock-event-id": ev.dedup_key}
    if t.secret:
        headers[SIGNATURE_HEADER] = sign(t.secret, now_s, body)
    return Outgoing(t.url, headers, body)


def _slack(t: Target, ev: AlertEvent, now_s: int) -> Outgoing:
    text = f"{_EMOJI.get(ev.severity, '')} *Interlock* {ev.summary}"
    return Outgoing(t.url, {"content-type": "application/json"}, orjson.dumps({"text": text}))


def _pagerduty(t: Target, ev: AlertEvent, now_s: int) -> Outgoing:
    body = {"routing_key": t.secret, "event_action": "trigger", "dedup_key": ev.dedup_key,
            "payload": {"summary": ev.summary[:1024], "source": "interlock", "severity": ev.severity,
                        "component": ev.kind, "custom_details": ev.details}}
    return Outgoing(t.url or PAGERDUTY_URL, {"content-type": "application/json"}, orjson.dumps(body))


BUILDERS: dict[str, Callable[[Target, AlertEvent, int], Outgoing]] = {
    "webhook": _webhook, "slack": _slack, "pagerduty": _pagerduty,
}
