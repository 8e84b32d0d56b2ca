"""Window keys are calendar-aligned in the budget's time zone (shared by control and data plane)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from interlock_contracts.budget_windows import current_window


def ts(s: str, tz: str) -> float:
    return datetime.fromisoformat(s).replace(tzinfo=ZoneInfo(tz)).timestamp()


def test_day_follows_the_budget_time_zone() -> None:
    now = ts("2026-11-18T23:30:00", "UTC")  # already the 19th in Berlin
    assert current_window("day", "UTC", now).key == "2026-11-18"
    w = current_window("day", "Europe/Berlin", now)
    assert w.key == "2026-11-19"
    assert w.start_unix_ms == ts("2026-11-19T00:00:00", "Europe/Berlin") * 1000
    assert w.reset_unix_ms == ts("2026-11-20T00:00:00", "Europe/Berlin") * 1000


def test_week_is_iso_and_month_rolls_over_the_year() -> None:
    w = current_window("week", "UTC", ts("2026-01-01T12:00:00", "UTC"))  # a Thursday in ISO week 1
    assert w.key == "2026-W01" and w.start_unix_ms == ts("2025-12-29T00:00:00", "UTC") * 1000
    m = current_window("month", "America/New_York", ts("2026-12-31T23:00:00", "America/New_York"))
    assert m.key == "2026-12" and m.reset_unix_ms == ts("2027-01-01T00:00:00", "America/New_York") * 1000


def test_dst_day_is_23_hours_and_minute_and_lifetime() -> None:
    w = current_window("day", "Europe/Berlin", ts("2026-03-29T12:00:00", "Europe/Berlin"))
    assert w.reset_unix_ms - w.start_unix_ms == 23 * 3600 * 1000
    mw = current_window("minute", "UTC", ts("2026-11-18T22:47:59", "UTC"))
    assert mw.key == "2026-11-18T22:47Z" and mw.reset_unix_ms - mw.start_unix_ms == 60_000
    assert current_window("lifetime", "UTC", 0).key == "lifetime"


def test_bad_inputs_say_what_to_use() -> None:
    with pytest.raises(ValueError, match="IANA"):
        current_window("day", "Mars/Olympus", 0)
    with pytest.raises(ValueError, match="lifetime"):
        current_window("fortnight", "UTC", 0)
