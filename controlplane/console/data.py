"""The console's questions to the usage store: ClickHouse aggregates, shaped for pages and charts.

Blocking (each call runs queries): pages call these through `asyncio.to_thread`. Nothing is summed
here: totals, shares, buckets and running sums all come from ClickHouse (ingest.console_queries and
ingest.queries); this module only turns rows into chart series and display records.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from ingest import console_queries as cq
from ingest.queries import Dimension, Window, parse_dimension, window_ending
from ingest.query_service import AuditRow, AuditTrail, SpendReport, TaskCost, UsageQueryService

Filters = tuple[tuple[Dimension, str], ...]
PERIODS = (("24h", timedelta(hours=24)), ("7d", timedelta(days=7)), ("30d", timedelta(days=30)))
TOP_GROUPS = 8


@dataclass(frozen=True)
class Period:
    label: str
    current: Decimal
    previous: Decimal

    @property
    def change_pct(self) -> str:
        if not self.previous:
            return "new" if self.current else "—"
        return f"{(self.current - self.previous) * 100 / self.previous:+.1f}%"


@dataclass(frozen=True)
class Health:
    requests: int
    errors: int
    fallbacks: int
    p50_ms: int
    p99_ms: int

    def rate(self, n: int) -> str:
        return f"{n * 100 / self.requests:.2f}%" if self.requests else "—"


def chart(kind: str, labels: list[str], datasets: list[dict[str, Any]], *, stacked: bool = False,
          money: bool = True) -> dict[str, Any]:
    """A Chart.js config (data only; console.js adds the colours and axis formatting)."""
    return {"type": kind, "data": {"labels": labels, "datasets": datasets}, "stacked": stacked, "money": money}


def series_chart(rows: list[Any], *, key_fmt: str = "%m-%d %H:%M") -> dict[str, Any]:
    """Rows (bucket_us, group, requests, cost) -> a stacked bar chart of cost per group."""
    from datetime import UTC, datetime

    buckets = sorted({int(r[0]) for r in rows})
    groups = sorted({str(r[1]) for r in rows}, key=lambda g: (g == cq.OTHER, g))
    index = {b: i for i, b in enumerate(buckets)}
    data = {g: [0.0] * len(buckets) for g in groups}
    for r in rows:
        data[str(r[1])][index[int(r[0])]] = float(r[3])  # a chart's bar height: display only, never a figure
    labels = [datetime.fromtimestamp(b / 1e6, UTC).strftime(key_fmt) for b in buckets]
    return chart("bar", labels, [{"label": g or "(none)", "data": data[g]} for g in groups], stacked=True)


class ConsoleData:
    def __init__(self, queries: UsageQueryService) -> None:
        self.q = queries

    @property
    def db(self) -> str:
        return self.q.database

    def window(self, span: timedelta) -> Window:
        return window_ending(span, self.q.now_us())

    def periods(self, where: Filters = ()) -> list[Period]:
        row = self.q.rows(self.q.rollups.periods(self.q.now_us(), [s for _, s in PERIODS], where), "overview periods")[0]
        return [Period(label, Decimal(row[2 * i]), Decimal(row[2 * i + 1])) for i, (label, _) in enumerate(PERIODS)]

    def health(self, span: timedelta, where: Filters = ()) -> Health:
        r = self.q.rows(cq.health(self.db, self.window(span), where), "request health")[0]
        return Health(int(r[0]), int(r[1]), int(r[2]), int(r[3] or 0), int(r[4] or 0))

    def spend(self, by: tuple[Dimension, ...], span: timedelta, where: Filters = (), limit: int = 100,
              order: str = "cost") -> SpendReport:
        return self.q.spend(by, span, where, limit, order)  # type: ignore[arg-type]

    def series(self, dim: Dimension, span: timedelta, gran: str, groups: list[str], where: Filters = ()) -> dict[str, Any]:
        step = cq.GRANULARITIES[gran]
        rows = self.q.rows(self.q.rollups.series(dim, self.window(span), step, groups[:TOP_GROUPS], where), "series")
        return series_chart(rows, key_fmt="%Y-%m-%d" if step >= 86_400 else "%m-%d %H:%M")

    def top_series(self, by: str, span: timedelta, gran: str, where: Filters = ()) -> tuple[SpendReport, dict[str, Any]]:
        dim = parse_dimension(by)
        report = self.spend((dim,), span, where, TOP_GROUPS)
        return report, self.series(dim, span, gran, [r.group[0] for r in report.rows], where)

    def task(self, task: str, span: timedelta | None) -> TaskCost:
        return self.q.task_cost(task, "task", "step", span)

    def trail(self, span: timedelta, where: Filters, *, status: cq.StatusClass = "", fallback: bool | None = None,
              guardrail: str = "", limit: int = 100) -> AuditTrail:
        w = self.window(span)
        rows = self.q.rows(cq.trail(self.db, w, where, status=status, fallback=fallback, guardrail=guardrail,
                                    limit=limit), "request trail")
        from ingest.queries import AUDIT_COLUMNS

        out = [AuditRow(**dict(zip(AUDIT_COLUMNS, r, strict=True))) for r in rows[:limit]]
        return AuditTrail(w, out, len(rows) > limit)

    def detail(self, event_id: str, where: Filters = ()) -> dict[str, Any] | None:
        rows = self.q.rows(cq.detail(self.db, event_id, where), "request detail")
        if not rows:
            return None
        d = dict(zip(cq.DETAIL_COLUMNS, rows[0], strict=True))
        names = ("provider", "deployment", "upstream_model", "status", "error_class", "latency_ms")
        # named tuples arrive as dicts from some drivers and as tuples from others
        d["attempts"] = [dict(a) if isinstance(a, dict) else dict(zip(names, a, strict=True)) for a in d["attempts"]]
        return d

    def burn(self, start_us: int, where: Filters, step_s: int) -> list[tuple[int, Decimal]]:
        """(bucket_us, running spend) since the window start."""
        w = Window(start_us, self.q.now_us())
        return [(int(r[0]), Decimal(r[2])) for r in self.q.rows(self.q.rollups.cumulative(w, step_s, where), "burn-down")]
