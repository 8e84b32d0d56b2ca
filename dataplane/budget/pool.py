"""Local accounting for one lease: reserve and settle against what the control plane granted this node.

No I/O and no awaits: the request path calls reserve()/settle(); the lease client reads the figures
to report spend and reads/writes the lease when a sync starts and when it returns.

Amounts are integers in the lease's unit (pico-USD, requests, tokens or concurrency slots).
Invariant kept locally: reserved + spent <= lease, except for overshoot (a request that settles
above its reservation), which is counted exactly and reported.

While a sync is in flight, admission is capped by `floor` (the lease the node asked to keep, in
pre-settlement terms): the control plane may shrink the lease to what was asked for, so nothing
admitted meanwhile may rely on the part being handed back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PoolKey:
    kind: int  # budget_pb2.LeaseKind value
    limit_id: str
    window_key: str


class LeasePool:
    __slots__ = (
        "acked_overshoot",
        "acked_settled",
        "allowance",
        "allowance_used",
        "floor",
        "flow_since_ms",
        "in_report",
        "in_report_overshoot",
        "key",
        "largest",
        "lease",
        "ledger",
        "mode",
        "on_draw",
        "optimistic",
        "overshoot",
        "overshoot_total",
        "reserved",
        "reserved_flow",
        "spent",
        "usable_until_ms",
        "waiting",
        "waiting_max",
    )

    def __init__(self, key: PoolKey, mode: str = "safe_share", optimistic: int = 0):
        self.key = key
        self.mode = mode  # offline mode: fail_closed | safe_share | optimistic
        self.optimistic = optimistic  # optimistic: extra spend allowed beyond the lease while offline
        self.lease = 0  # granted to this node and not yet settled in the ledger (authoritative after each sync)
        self.reserved = 0  # in-flight reservations
        self.spent = 0  # settled locally, not yet acknowledged by the control plane
        self.overshoot = 0  # part of `spent` that exceeded its reservations
        self.in_report = 0  # part of `spent` carried by the sync in flight (or being retried)
        self.in_report_overshoot = 0
        self.floor: int | None = None  # lease the node promised to keep while a sync is in flight
        self.allowance = 0  # extra the offline mode lets this node spend beyond its lease (optimistic)
        self.allowance_used = 0  # drawn from it in this window, over every outage (and restart: AllowanceBook)
        self.on_draw: Callable[[int], None] | None = None  # persists a draw on the allowance
        self.usable_until_ms = 0  # local time after which the lease may not be used (expiry, offline mode)
        self.largest = 0  # largest single reservation seen: the smallest useful grant
        self.reserved_flow = 0  # amount reserved since flow_since_ms (demand estimate; the lease client resets it)
        self.flow_since_ms = 0
        self.waiting = 0  # sum wanted by requests waiting for a refill (re-registered after every sync)
        self.waiting_max = 0  # the largest of those
        self.overshoot_total = 0  # lifetime sum of (actual - reserved) where positive: exported as a metric
        self.ledger: LedgerView | None = None  # the ledger figures of the last grant (refusal messages, CLI)
        # Cumulative spend the control plane acknowledged for this lease (this process lifetime): reports carry
        # acked + spent, so a retried or duplicated Sync is applied once, with current figures.
        self.acked_settled = 0
        self.acked_overshoot = 0

    def _lease_room(self, now_ms: int) -> int:
        """What the lease still covers; 0 past its deadline (what was taken from it stays covered by it)."""
        if now_ms >= self.usable_until_ms:
            return 0
        cap = self.lease if self.floor is None else min(self.lease, self.floor)
        return cap - self.reserved - self.spent

    def available(self, now_ms: int) -> int:
        room = self._lease_room(now_ms)
        if not self.allowance:
            return room
        # spend beyond the lease is already counted in allowance_used: a negative room must not count it twice
        return max(0, room) + max(0, self.allowance - self.allowance_used)

    def take(self, amount: int, now_ms: int | None = None) -> None:
        """Reserve `amount` (the caller checked available()). Offline, what the lease cannot cover is drawn
        from the optimistic allowance, once per window however many outages there are."""
        if self.allowance and now_ms is not None:
            drawn = amount - max(0, min(amount, self._lease_room(now_ms)))
            if drawn > 0:
                self.allowance_used += drawn
                if self.on_draw is not None:
                    self.on_draw(drawn)
        self.reserved += amount
        self.reserved_flow += amount
        if amount > self.largest:
            self.largest = amount

    def release(self, reserved: int) -> None:
        """Give back a reservation that was never used (all-or-nothing rollback, request refused later)."""
        self.reserved -= reserved
        self.reserved_flow -= reserved

    def settle(self, reserved: int, actual: int) -> None:
        """The request finished: `actual` is spent, the rest of the reservation is free again."""
        self.reserved -= reserved
        if actual <= 0:
            return
        self.spent += actual
        if actual > reserved:
            self.overshoot += actual - reserved
            self.overshoot_total += actual - reserved

    # ---- lease client side -----------------------------------------------------------------------------
    def begin_report(self, want_total: int) -> tuple[int, int]:
        """Start a sync, or retry one whose outcome is unknown WITH CURRENT FIGURES: returns the cumulative
        (settled_total, overshoot_total). While any attempt may still be applied, admission stays under the
        smallest lease one of them asked to keep (pre-settlement terms)."""
        self.in_report, self.in_report_overshoot = self.spent, self.overshoot
        floor = self.in_report + want_total
        self.floor = floor if self.floor is None else min(self.floor, floor)
        return self.acked_settled + self.in_report, self.acked_overshoot + self.in_report_overshoot

    def finish_report(self, lease: int, ledger: LedgerView | None) -> None:
        """The control plane applied the report and says the lease is now `lease` (unsettled part only)."""
        self.acked_settled += self.in_report
        self.acked_overshoot += self.in_report_overshoot
        self.spent -= self.in_report
        self.overshoot -= self.in_report_overshoot
        self.in_report = self.in_report_overshoot = 0
        self.floor = None
        self.lease = lease
        if ledger is not None:
            self.ledger = ledger

    def go_offline(self, now_ms: int) -> None:
        """The control plane is unreachable: follow this limit's offline mode."""
        if self.mode == "fail_closed":
            self.usable_until_ms = 0
        elif self.mode == "optimistic":
            self.allowance = self.optimistic

    def go_online(self, usable_until_ms: int) -> None:
        self.usable_until_ms = usable_until_ms
        self.allowance = 0

    @property
    def idle(self) -> bool:
        return not (self.reserved or self.spent or self.lease or self.waiting or self.floor is not None)


@dataclass(frozen=True, slots=True)
class LedgerView:
    limit: int
    settled: int
    leased: int
    remaining: int
    resets_unix_ms: int
