"""Budget state for people: every budget and rate limit of the current policy in its current window, joined with
the ledger (a limit nobody has used yet shows its full limit). Pure: snapshot + ledger rows in, rows out."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from interlock_contracts.v1 import policy_pb2

from .limits import LimitSpec, limit_book
from .record import KIND_NAMES, LedgerRecord

UNITS = {"budget": "usd", "requests": "requests", "tokens": "tokens", "concurrency": "slots"}


@dataclass(frozen=True)
class BudgetRow:
    kind: str  # budget | requests | tokens | concurrency
    limit_id: str
    scope: str
    scope_id: str
    window: str
    window_key: str
    unit: str  # usd (amounts in pico-USD) | requests | tokens | slots
    limit: int
    settled: int
    leased: int  # handed to data planes, in use or not
    reserved: int  # inside `leased`: held by requests in flight, as the nodes last reported
    remaining: int
    overshoot: int
    reclaimed: int
    nodes: int  # nodes holding a lease now
    resets_unix_ms: int  # 0 = never (lifetime)
    current: bool  # False = a past window kept for history


def _row(spec: LimitSpec, window_key: str, reset_ms: int, rec: LedgerRecord | None, now_ms: int,
         current: bool) -> BudgetRow:
    rec = rec or LedgerRecord(limit=spec.limit)
    limit = spec.limit if current else rec.limit
    leased = rec.leased(now_ms)
    kind = KIND_NAMES[spec.kind]
    return BudgetRow(
        kind=kind, limit_id=spec.limit_id, scope=spec.scope, scope_id=spec.scope_id, window=spec.window,
        window_key=window_key, unit=UNITS[kind], limit=limit, settled=rec.settled, leased=leased,
        reserved=rec.reserved(now_ms),
        remaining=max(0, limit - rec.settled - leased), overshoot=rec.overshoot, reclaimed=rec.reclaimed,
        nodes=sum(1 for x in rec.leases.values() if x.expires_ms > now_ms), resets_unix_ms=reset_ms, current=current,
    )


def budget_rows(
    policy: policy_pb2.BudgetPolicy, ledger: Iterable[tuple[int, str, str, LedgerRecord]], *, now_s: float,
    history: bool = False,
) -> list[BudgetRow]:
    """One row per limit of the policy in its current window; with `history`, past windows too."""
    now_ms = int(now_s * 1000)
    records = {(kind, lid, wk): rec for kind, lid, wk, rec in ledger}
    rows = []
    for (kind, lid), spec in sorted(limit_book(policy).items(), key=lambda kv: (kv[0][1], kv[0][0])):
        window = spec.window_at(now_s)
        rows.append(_row(spec, window.key, window.reset_unix_ms, records.get((kind, lid, window.key)), now_ms, True))
        if history:
            past = sorted(wk for k, i, wk in records if (k, i) == (kind, lid) and wk != window.key)
            rows += [_row(spec, wk, 0, records[kind, lid, wk], now_ms, False) for wk in reversed(past)]
    return rows
