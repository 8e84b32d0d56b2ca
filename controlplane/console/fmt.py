"""Display formats for the console (the exact values travel alongside in data-value attributes)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

_MICRO = Decimal("0.000001")


def money(value: Decimal | str) -> str:
    """6 decimals, like the CLI's tables; a nonzero cost below that keeps its digits (never shown as $0)."""
    d = Decimal(value)
    q = d.quantize(_MICRO)
    return f"${q if q or not d else d.normalize():,f}"


def exact(value: Decimal | str) -> str:
    return format(Decimal(value), "f")


def n(v: int | str) -> str:
    return f"{int(v):,}"


def when_us(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, UTC).strftime("%Y-%m-%d %H:%M:%S")


def when_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1e3, UTC).strftime("%Y-%m-%d %H:%M") if ms else "never"


def v(s: str) -> str:
    return s if s else "(none)"
