"""Rebuilds the exact rollups (ingest.rollup_schema) from usage_by_time, one UTC day at a time.

A rebuild of day D: read the server clock (`rolled_at`), pick `covered_until` = the end of the last
hour of D that closed at least `grace_s` ago, aggregate `usage_by_time FINAL` over
[D, covered_until) into a staging table of its own, and swap that in with REPLACE PARTITION (one
atomic step: readers see the old or the new day, never a half). Idempotent: running it again gives
the same rows (with a newer rolled_at). Safe to run from several processes at once: each rebuild
uses its own staging table, and whichever swap lands last carries its own rolled_at, so readers
judge the rows they see by the rebuild that wrote them.

`due()` finds the days to rebuild: a day with a closed hour not yet covered (the open day, as hours
close) or with a mark newer than its rows' rolled_at (a late or redelivered event). The ingest
service runs `roll_due()` every few seconds (`RollupLoop`).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ingest.clickhouse_writer import IngestError, translate_errors
from ingest.queries import BY_TIME_SETTINGS, BY_TIME_TABLE
from ingest.rollup_schema import MARKS_TABLE, MEASURES, ROLLUPS, TAG_TOTALS, Rollup
from ingest.schema import DEFAULT_DATABASE, check_identifier

log = logging.getLogger(__name__)

DAY_S = 86_400
HOUR_S = 3600
_SUMS = ("toUInt64(count()), toUInt64(countIf(status >= 400)), sum(input_tokens), sum(output_tokens), "
         "sum(cached_input_tokens), sum(cache_write_5m_tokens), sum(cache_write_1h_tokens), sum(cost_usd)")


@dataclass(frozen=True)
class DayState:
    rolled_at_us: int
    covered_until_s: int


def _select(r: Rollup, db: str) -> str:
    """The rebuild's SELECT for one rollup: bound {rolled:Int64} {day:Int64} {until:Int64} (seconds/us)."""
    bucket = "toStartOfHour(received_at)" if r.step_s == HOUR_S else "toStartOfDay(received_at)"
    keys = ", ".join(r.dims)
    src = f"{db}.{BY_TIME_TABLE} FINAL"
    if r.tags:
        # Every event once in the totals row, and once per (non-empty) tag name it carries.
        src += (f" ARRAY JOIN arrayConcat([('{TAG_TOTALS}', '')], arrayFilter(kv -> kv.1 != '', "
                "arrayZip(mapKeys(tags), mapValues(tags)))) AS kv")
        keys = "kv.1 AS tag_key, kv.2 AS tag_value"
    group = ", ".join(("bucket", "tag_key, tag_value" if r.tags else ", ".join(r.dims)))
    return (f"SELECT {bucket} AS bucket, {keys}, {_SUMS}, fromUnixTimestamp64Micro({{rolled:Int64}}, 'UTC'), "
            f"toDateTime({{until:Int64}}, 'UTC') FROM {src} "
            "WHERE received_at >= toDateTime64({day:Int64}, 6, 'UTC') "
            f"AND received_at < toDateTime64({{until:Int64}}, 6, 'UTC') GROUP BY {group}")


def _columns(r: Rollup) -> str:
    dims = ("tag_key", "tag_value") if r.tags else r.dims
    return ", ".join(("bucket", *dims, *MEASURES, "cost", "rolled_at", "covered_until"))


class Roller:
    """Rebuilds rollup days. Give it a client of its own (not the writer's: one query at a time each)."""

    def __init__(self, client: Any, database: str = DEFAULT_DATABASE, *, grace_s: int = 120,
                 rollups: Sequence[Rollup] = ROLLUPS) -> None:
        self._client = client
        self._db = check_identifier(database)
        self._grace_s = grace_s
        self._rollups = tuple(rollups)

    def _query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[Sequence[Any]]:
        with translate_errors(f"rollup query on {self._db}"):
            return list(self._client.query(sql, parameters=parameters or {}).result_rows)

    def _command(self, sql: str, parameters: dict[str, Any] | None = None,
                 settings: dict[str, Any] | None = None) -> None:
        with translate_errors(f"rollup rebuild on {self._db}"):
            self._client.command(sql, parameters=parameters or {}, settings=settings or {})

    def server_now_us(self) -> int:
        return int(self._query("SELECT toUnixTimestamp64Micro(now64(6, 'UTC'))")[0][0])

    def roll_day(self, day_s: int) -> DayState | None:
        """Rebuild day `day_s` (UTC midnight, Unix seconds) in every rollup; None if no hour has closed."""
        if day_s % DAY_S:
            raise ValueError(f"{day_s} is not a UTC midnight")
        rolled = self.server_now_us()  # before any read of the source: see ingest.rollup_schema
        until = min(day_s + DAY_S, (rolled // 1_000_000 - self._grace_s) // HOUR_S * HOUR_S)
        if until <= day_s:
            return None
        partition = time.strftime("%Y%m%d", time.gmtime(day_s))
        for r in self._rollups:
            stage = f"{r.table}_stage_{uuid.uuid4().hex[:12]}"
            self._command(f"CREATE TABLE {self._db}.{stage} AS {self._db}.{r.table}")
            try:
                self._command(f"INSERT INTO {self._db}.{stage} ({_columns(r)}) {_select(r, self._db)}",
                              {"rolled": rolled, "day": day_s, "until": until}, dict(BY_TIME_SETTINGS))
                self._command(f"ALTER TABLE {self._db}.{r.table} REPLACE PARTITION {partition} "
                              f"FROM {self._db}.{stage}")
            finally:
                self._command(f"DROP TABLE IF EXISTS {self._db}.{stage}")
        return DayState(rolled, until)

    def states(self, r: Rollup, since_s: int) -> dict[int, DayState]:
        """Per day: the rolled_at and covered_until of the rows there (the oldest, to be safe)."""
        rows = self._query(
            f"SELECT toUnixTimestamp(toStartOfDay(bucket)) AS d, min(toUnixTimestamp64Micro(rolled_at)), "
            f"min(toUnixTimestamp(covered_until)) FROM {self._db}.{r.table} WHERE bucket >= toDateTime({{s:Int64}}, "
            "'UTC') GROUP BY d", {"s": since_s})
        return {int(d): DayState(int(r_), int(u)) for d, r_, u in rows}

    def marks(self, since_s: int) -> dict[int, int]:
        """Per hour (Unix seconds): the newest mark (Unix microseconds)."""
        rows = self._query(f"SELECT toUnixTimestamp(hour) AS h, max(toUnixTimestamp64Micro(marked_at)) FROM "
                           f"{self._db}.{MARKS_TABLE} WHERE hour >= toDateTime({{s:Int64}}, 'UTC') GROUP BY h",
                           {"s": since_s})
        return {int(h): int(m) for h, m in rows}

    def due(self, now_us: int, lookback_days: int = 400) -> list[int]:
        """Days (UTC midnights) with a closed hour holding events that some rollup does not cover exactly."""
        since = (now_us // 1_000_000 // DAY_S - lookback_days) * DAY_S
        closed = (now_us // 1_000_000 - self._grace_s) // HOUR_S * HOUR_S  # hours before this are closed
        marks = self.marks(since)
        states = [self.states(r, since) for r in self._rollups]
        days = set()
        for hour, mark in marks.items():
            if hour >= closed:
                continue
            day = hour - hour % DAY_S
            for st in states:
                s = st.get(day)
                if s is None or hour >= s.covered_until_s or mark > s.rolled_at_us:
                    days.add(day)
                    break
        return sorted(days)

    def roll_due(self, max_days: int = 50) -> int:
        """Rebuild what `due` finds, oldest first, at most `max_days` per call; returns how many."""
        days = self.due(self.server_now_us())[:max_days]
        for day in days:
            self.roll_day(day)
        if days:
            log.info("rollups rebuilt for %d day(s), from %s", len(days), time.strftime("%Y-%m-%d", time.gmtime(days[0])))
        return len(days)


class RollupLoop:
    """Runs `Roller.roll_due` in a worker thread every `interval_s` until stopped; failures are logged
    and retried next time (queries stay exact meanwhile: they read usage_by_time where rollups lag)."""

    def __init__(self, roller: Roller, interval_s: float = 30.0,
                 on_error: Callable[[Exception], None] | None = None) -> None:
        self._roller = roller
        self._interval_s = interval_s
        self._on_error = on_error
        self.runs = 0

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await asyncio.to_thread(self._roller.roll_due)
                self.runs += 1
            except IngestError as exc:
                log.warning("rollup rebuild failed (will retry): %s", exc)
                if self._on_error is not None:
                    self._on_error(exc)
            try:
                await asyncio.wait_for(stop.wait(), timeout=self._interval_s)
            except TimeoutError:
                pass


def open_roller(dsn: str, database: str = DEFAULT_DATABASE, *, grace_s: int = 120) -> tuple[Roller, Callable[[], None]]:
    """A Roller with a client of its own on `dsn` (on chDB, the writer's path), and how to close it."""
    import clickhouse_connect

    from ingest.clickhouse_writer import redact_dsn

    with translate_errors(f"connecting the rollup builder to {redact_dsn(dsn)}"):
        client = clickhouse_connect.get_client(dsn=dsn)
    return Roller(client, database, grace_s=grace_s), client.close
