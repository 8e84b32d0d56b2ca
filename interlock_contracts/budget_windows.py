"""Budget and rate-limit windows, shared by control and data plane so both name a window identically.

Window keys (the ledger's and the lease protocol's `window_key`):

    lifetime  "lifetime"
    day       "2026-11-23"        calendar day in the budget's time zone
    week      "2026-W48"          ISO week (Monday 00:00) in the budget's time zone
    month     "2026-11"           calendar month in the budget's time zone
    minute    "2026-11-23T22:47Z" UTC minute (rate limits)

Pure functions of (window, time zone, unix time); time zones come from the IANA database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

WINDOWS = ("lifetime", "day", "week", "month", "minute")
LIFETIME = "lifetime"


@dataclass(frozen=True, slots=True)
class Window:
    key: str
    start_unix_ms: int  # 0 for lifetime
    reset_unix_ms: int  # when the next window starts; 0 for lifetime


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    """The IANA zone `name`; ValueError names the problem (the zone database is immutable, so caching is safe)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}: use an IANA name such as 'UTC' or 'Europe/Berlin'") from exc


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def _local_midnight(day: datetime, tz: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=tz)


def current_window(window: str, tz_name: str, now_unix_s: float) -> Window:
    """The window containing `now_unix_s`."""
    if window == LIFETIME:
        return Window(LIFETIME, 0, 0)
    if window == "minute":
        start = int(now_unix_s // 60) * 60
        key = datetime.fromtimestamp(start, UTC).strftime("%Y-%m-%dT%H:%MZ")
        return Window(key, start * 1000, (start + 60) * 1000)
    tz = zone(tz_name)
    local = datetime.fromtimestamp(now_unix_s, tz)
    if window == "day":
        start_dt = _local_midnight(local, tz)
        nxt = local.date() + timedelta(days=1)
        return Window(local.strftime("%Y-%m-%d"), _ms(start_dt), _ms(datetime(nxt.year, nxt.month, nxt.day, tzinfo=tz)))
    if window == "week":
        iso = local.isocalendar()
        monday = local.date() - timedelta(days=local.weekday())
        nxt = monday + timedelta(days=7)
        return Window(
            f"{iso.year}-W{iso.week:02d}",
            _ms(datetime(monday.year, monday.month, monday.day, tzinfo=tz)),
            _ms(datetime(nxt.year, nxt.month, nxt.day, tzinfo=tz)),
        )
    if window == "month":
        start_dt = datetime(local.year, local.month, 1, tzinfo=tz)
        ny, nm = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
        return Window(local.strftime("%Y-%m"), _ms(start_dt), _ms(datetime(ny, nm, 1, tzinfo=tz)))
    raise ValueError(f"unknown window {window!r}: use one of {', '.join(WINDOWS)}")


def window_key(window: str, tz_name: str, now_unix_s: float) -> str:
    return current_window(window, tz_name, now_unix_s).key
