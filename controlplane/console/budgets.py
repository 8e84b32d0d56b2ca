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
from interlock.windows import current_window

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
        return f"{self.row.settled * 100 / self.row.limit:.1f}%" if self.row.limit else "—"


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
            step = 3600 if now_s * 1000 - start_ms <= 8 * 86_400_000 else 86_400
            try:
                burn = await asyncio.to_thread(c.data.burn, start_ms * 1000, filters, step)
            except IngestError:
                burn = []
            labels = [time.strftime("%m-%d %H:%M", time.gmtime(b / 1e6)) for b, _ in burn]
            limit = float(Decimal(row.limit) / PICO)
            ch = chart("line", labels, [
                {"label": "spent (running)", "data": [float(v) for _, v in burn]},
                {"label": "limit", "data": [limit] * len(burn)},
            ])
        out.append(BudgetView(row, amount, start_ms, projected, ch))
    return out
