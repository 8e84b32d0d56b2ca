"""Runs the FinOps and audit queries of `ingest.queries` and returns typed rows.

Driver exceptions become `IngestError` here, once (via
`ingest.clickhouse_writer.translate_errors`); a store without the usage tables
yet becomes `UsageStoreMissing`, so callers can say "no usage recorded yet"
instead of showing an engine error. Costs stay exact `Decimal`s end to end.

One client, one lock: clickhouse-connect's HTTP client runs each query in a
session that refuses concurrent queries, and a chDB client serializes anyway,
so queries from several threads (FastAPI's thread pool) take turns.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from types import TracebackType
from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from ingest import queries
from ingest.audit_row import AuditRow, audit_row_model
from ingest.clickhouse_writer import IngestError, redact_dsn, translate_errors
from ingest.queries import Dimension, Order, Query, Window
from ingest.rollup_read import RollupReader
from ingest.schema import DEFAULT_DATABASE, check_identifier
from interlock_contracts.usage_schema import UsageSchema

_MISSING_CODES = frozenset({60, 81})  # UNKNOWN_TABLE, UNKNOWN_DATABASE
_CENT = Decimal("0.01")

Filters = Sequence[tuple[Dimension, str]]


class UsageStoreMissing(IngestError):
    """The usage database or table does not exist yet: nothing has been recorded."""


@dataclass(frozen=True)
class Totals:
    requests: int
    errors: int
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal


@dataclass(frozen=True)
class Counts:
    """What every usage group reports: the shared part of a spend row and a task step."""

    requests: int
    errors: int
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cost_usd: Decimal


@dataclass(frozen=True, kw_only=True)
class SpendRow(Counts):
    group: tuple[str, ...]  # one value per dimension of SpendReport.by
    share_pct: Decimal  # of the total cost over all groups, 2 places; 0 when nothing cost anything


@dataclass(frozen=True)
class SpendReport:
    by: tuple[str, ...]
    window: Window
    rows: list[SpendRow]
    groups: int  # all groups, even those past the limit
    total: Totals


@dataclass(frozen=True, kw_only=True)
class StepCost(Counts):
    step: str
    model: str
    first_us: int
    last_us: int
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0


@dataclass(frozen=True)
class TaskCost:
    task: str
    tag_key: str
    step_key: str
    rows: list[StepCost]
    total: Totals


@dataclass(frozen=True)
class AuditTrail:
    window: Window
    rows: list[AuditRow]  # ingest.audit_row: one type for the service, the admin API and the CLI
    truncated: bool  # more requests matched than the limit


def share(part: Decimal, whole: Decimal) -> Decimal:
    return (part * 100 / whole).quantize(_CENT) if whole else Decimal(0)


def _totals(rows: Sequence[SpendRow | StepCost]) -> Totals:
    return Totals(sum(r.requests for r in rows), sum(r.errors for r in rows), sum(r.input_tokens for r in rows),
                  sum(r.output_tokens for r in rows), sum((r.cost_usd for r in rows), Decimal(0)))


class UsageQueryService:
    """Answers spend / top / per-task cost / audit questions. Owns (and closes) its client."""

    def __init__(self, client: Client, database: str = DEFAULT_DATABASE, *,
                 clock: Callable[[], float] = time.time, schema: UsageSchema | None = None,
                 use_rollups: bool = True) -> None:
        self._client = client
        self._schema = schema  # None: the production usage schema (interlock_contracts/usage_schema.py)
        self.audit_row = AuditRow if schema is None else audit_row_model(schema)
        self._database = check_identifier(database)
        self._clock = clock
        self._lock = threading.Lock()
        self.rollups = RollupReader(self._run, self._database, enabled=use_rollups)  # exact pre-aggregates

    @classmethod
    def from_dsn(cls, dsn: str, database: str = DEFAULT_DATABASE) -> UsageQueryService:
        """Connect without migrating (readers never change the schema). On chDB, use the path the
        writer uses: one engine path per process, shared by any number of clients."""
        with translate_errors(f"connecting to ClickHouse at {redact_dsn(dsn)}"):
            return cls(clickhouse_connect.get_client(dsn=dsn), database)

    @property
    def database(self) -> str:
        return self._database

    def window(self, span: timedelta) -> Window:
        return queries.window_ending(span, int(self._clock() * 1_000_000))

    # -- questions ---------------------------------------------------------------------

    def spend(self, by: Sequence[Dimension], since: timedelta, where: Filters = (), limit: int = 100,
              order: Order = "cost") -> SpendReport:
        window = self.window(since)
        rows = self._run(self.rollups.spend(by, window, where, limit, order), "spend")
        n = len(by)
        t = rows[0] if rows else None
        total = (Totals(int(t[n + 6]), int(t[n + 7]), int(t[n + 8]), int(t[n + 9]), Decimal(t[n + 10]))
                 if t is not None else _totals([]))
        out = [
            SpendRow(int(r[n]), int(r[n + 1]), int(r[n + 2]), int(r[n + 3]), int(r[n + 4]), Decimal(r[n + 5]),
                     group=tuple(str(v) for v in r[:n]), share_pct=share(Decimal(r[n + 5]), total.cost_usd))
            for r in rows
        ]
        return SpendReport(tuple(d.name for d in by), window, out, int(rows[0][-1]) if rows else 0, total)

    def top(self, by: Sequence[Dimension], since: timedelta, limit: int = 10, order: Order = "cost",
            where: Filters = ()) -> SpendReport:
        """The heaviest groups by `order`; a spend report with a short limit."""
        return self.spend(by, since, where, limit, order)

    def task_cost(self, task: str, tag_key: str = "task", step_key: str = "step",
                  since: timedelta | None = None) -> TaskCost:
        window = self.window(since) if since is not None else None
        rows = self._run(queries.task_cost(self._database, task, tag_key, step_key, window), "task cost")
        steps = [StepCost(int(r[2]), int(r[3]), int(r[4]), int(r[5]), int(r[6]), Decimal(r[7]), step=str(r[0]),
                          model=str(r[1]), first_us=int(r[8]), last_us=int(r[9]), cache_write_5m_tokens=int(r[10]),
                          cache_write_1h_tokens=int(r[11])) for r in rows]
        return TaskCost(task, tag_key, step_key, steps, _totals(steps))

    def audit(self, since: timedelta, where: Filters = (), limit: int = 100) -> AuditTrail:
        window = self.window(since)
        rows = self._run(queries.audit(self._database, window, where, limit, self._schema), "audit")
        names = tuple(self.audit_row.model_fields)
        trail = [self.audit_row(**dict(zip(names, r, strict=True))) for r in rows[:limit]]
        return AuditTrail(window, trail, len(rows) > limit)

    # -- plumbing ----------------------------------------------------------------------

    def now_us(self) -> int:
        return int(self._clock() * 1_000_000)

    def rows(self, query: Query, what: str) -> list[Sequence[Any]]:
        """Run a builder's query (ingest.console_queries) with this service's client, lock and errors."""
        return self._run(query, what)

    def _run(self, query: Query, what: str) -> list[Sequence[Any]]:
        try:
            with self._lock, translate_errors(f"{what} query on {self._database}.usage_events"):
                return list(self._client.query(query.sql, parameters=query.parameters,
                                               settings=query.settings).result_rows)
        except IngestError as exc:
            if exc.code in _MISSING_CODES:
                raise UsageStoreMissing(
                    f"no usage recorded yet: {self._database}.usage_events or its query copy usage_by_time does "
                    "not exist (is the usage sink enabled and has it written a batch? A store from before schema "
                    "v4 gets usage_by_time when the writer next starts)", code=exc.code) from exc
            raise

    def close(self) -> None:
        with translate_errors("closing the ClickHouse client"):
            self._client.close()

    def __enter__(self) -> UsageQueryService:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
