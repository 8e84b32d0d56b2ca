"""Retry delays: exponential backoff with full jitter, and the provider's retry-after hint."""

from __future__ import annotations

import email.utils
from collections.abc import Mapping


def backoff_s(retry: int, base_s: float, max_s: float, rand: float) -> float:
    """Delay before retry number `retry` (0-based): uniform in [0, min(max, base * 2**retry)] ("full jitter",
    so many clients retrying together spread out). `rand` is a uniform [0, 1) draw."""
    return min(max_s, base_s * (2 ** min(retry, 30))) * rand


def retry_after_s(headers: Mapping[str, str], now_unix: float) -> float | None:
    """The provider's hint: `retry-after-ms`, else `retry-after` as seconds or an HTTP date. None if absent/bad."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now_unix)
