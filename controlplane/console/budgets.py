"""Budgets and rate limits for the console: ledger figures plus a burn-down from ClickHouse.

The burn-down is the running spend of the budget's scope since its window started (aggregated in
ClickHouse); the projection extends the average rate so far (ledger-settled spend / elapsed time) to
the limit: the projected exhaustion time, or none before the window resets.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from controlplane.budget.visibility import BudgetRow
from ingest.clickhouse_writer import IngestError
from ingest.queries import parse_where
from interlock_contracts.budget_windows import current_window

from .data import chart

if TYPE_CHECKING:
    from .app import Console

PICO = Decimal(10) ** 12
_SCOPE_DIM = {"key": "key", "team": "team", "user": "user", "project": "project"}


@dataclass(frozen=True)
class BudgetView:
    row: BudgetRow
    amount: Any  # display callable
    start_ms: int
    projected_ms: int  # 0: not projected to run out before the reset (or no spend yet)
    chart: dict[str, Any] | None

    @property
    def used_pct(self) -> str:
        if not self.row.limit:
            return "—"
        pct = self.row.settled * 100 / self.row.limit
        return "<0.1%" if 0 < pct < 0.1 else f"{pct:.1f}%"


def amount(value: int, unit: str) -> str:
    return format(Decimal(value) / PICO, "f") if unit == "usd" else str(value)


def _filters(row: BudgetRow) -> tuple[Any, ...] | None:
    if row.scope in _SCOPE_DIM:
        return parse_where([f"{_SCOPE_DIM[row.scope]}={row.scope_id}"])
    if row.scope == "tag" and "=" in row.scope_id:
        name, _, value = row.scope_id.partition("=")
        return parse_where([f"tag:{name}={value}"])
    if row.scope == "global":
        return ()
    return None


def project(row: BudgetRow, start_ms: int, now_ms: int) -> int:
    """When the average rate so far reaches the limit; 0 if not before the reset (or nothing spent yet)."""
    elapsed = now_ms - start_ms
    if row.settled <= 0 or elapsed <= 0 or row.limit <= 0:
        return 0
    at = start_ms + int(elapsed * row.limit / row.settled)
    return at if not row.resets_unix_ms or at < row.resets_unix_ms else 0


def burn_chart(row: BudgetRow, start_ms: int, now_ms: int, step_s: int,
               burn: list[tuple[int, Decimal]]) -> dict[str, Any]:
    """The whole window on the x axis: running spend up to now (ClickHouse's running sums, carried across
    empty buckets), the limit, and the average rate so far extended to the window's end."""
    end_ms = row.resets_unix_ms or now_ms
    step_ms = step_s * 1000
    first = start_ms - start_ms % step_ms
    buckets = list(range(first, max(end_ms, now_ms) + 1, step_ms))[:800]
    running = dict((b // 1000, v) for b, v in burn)
    spent: list[float | None] = []
    last = 0.0
    for b in buckets:
        if b > now_ms:
            spent.append(None)
            continue
        last = float(running.get(b, Decimal(last)))
        spent.append(last)
    limit = float(Decimal(row.limit) / PICO)
    rate = float(Decimal(row.settled) / PICO) / max(1, now_ms - start_ms)  # USD per ms so far
    projection = [round(rate * max(0, b + step_ms - start_ms), 12) for b in buckets]
    labels = [time.strftime("%m-%d %H:%M", time.gmtime(b / 1000)) for b in buckets]
    return chart("line", labels, [
        {"label": "spent (running)", "data": spent},
        {"label": "projected at the rate so far", "data": projection},
        {"label": "limit", "data": [limit] * len(buckets)},
    ])


async def budget_views(c: Console, rows: list[BudgetRow]) -> list[BudgetView]:
    now_s = time.time()
    out = []
    for row in (r for r in rows if r.current):
        # the window start in UTC: a budget in another time zone starts up to a few hours off on the chart
        start_ms = current_window(row.window, "UTC", now_s).start_unix_ms or int((now_s - 30 * 86_400) * 1000)
        projected = project(row, start_ms, int(now_s * 1000)) if row.unit == "usd" else 0
        filters = _filters(row)
        ch = None
        if row.unit == "usd" and c.data is not None and filters is not None:
            step = 3600 if (row.resets_unix_ms or now_s * 1000) - start_ms <= 8 * 86_400_000 else 86_400
            try:
                burn = await asyncio.to_thread(c.data.burn, start_ms * 1000, filters, step)
            except IngestError:
                burn = []
            ch = burn_chart(row, start_ms, int(now_s * 1000), step, burn)
        out.append(BudgetView(row, amount, start_ms, projected, ch))
    return out
