"""One ledger record: a budget or rate limit in one window, as stored (JSON) under `budget/...`.

Key layout, relative to the deployment prefix:

    {prefix}/budget/{kind}/{limit_id}/{window_key}   LedgerRecord JSON

kind is "budget" | "requests" | "tokens" | "concurrency"; limit_id is a Budget or RateLimit id ("key:vk_..."
for per-run keys); window_key comes from interlock_contracts.budget_windows. Records live outside policy/, so ledger churn never
wakes the snapshot publisher.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from interlock_contracts.v1 import budget_pb2

LEDGER = "budget/"
KIND_NAMES: dict[int, str] = {
    budget_pb2.LEASE_KIND_BUDGET: "budget",
    budget_pb2.LEASE_KIND_REQUESTS: "requests",
    budget_pb2.LEASE_KIND_TOKENS: "tokens",
    budget_pb2.LEASE_KIND_CONCURRENCY: "concurrency",
}
KIND_BY_NAME = {v: k for k, v in KIND_NAMES.items()}


def ledger_key(kind: int, limit_id: str, window_key: str) -> str:
    return f"{LEDGER}{KIND_NAMES[kind]}/{limit_id}/{window_key}"


def parse_ledger_key(key: str) -> tuple[int, str, str] | None:
    parts = key.removeprefix(LEDGER).split("/")
    if len(parts) != 3 or parts[0] not in KIND_BY_NAME:
        return None
    return KIND_BY_NAME[parts[0]], parts[1], parts[2]


@dataclass
class Lease:
    amount: int
    expires_ms: int
    reserved: int = 0  # as last reported by the node: in use by its requests in flight (informational)


@dataclass
class Stranded:
    """An expired lease, still counted as spent: its holder may report late until `until_ms`."""

    amount: int
    reserved: int  # in flight at the holder's last report: presumed spent if it never reports again
    until_ms: int


@dataclass
class LedgerRecord:
    limit: int
    settled: int = 0
    overshoot: int = 0  # spend reported beyond reservations (+ settles that arrived after their lease expired)
    reclaimed: int = 0  # unspent rest of expired leases returned to the pool after reconciliation
    presumed_total: int = 0  # lifetime: spend presumed (in `settled`) for holders that never reported back
    leases: dict[str, Lease] = field(default_factory=dict)
    seqs: dict[str, tuple[int, int]] = field(default_factory=dict)  # holder -> (last applied seq, when, ms)
    # holder (node@incarnation) -> expired lease awaiting a late report (counted in leased())
    stranded: dict[str, Stranded] = field(default_factory=dict)
    presumed: dict[str, int] = field(default_factory=dict)  # holder -> spend presumed into `settled`, pending report
    reported: dict[str, tuple[int, int]] = field(default_factory=dict)  # holder -> cumulative (settled, overshoot)

    def leased(self, now_ms: int) -> int:
        """Held for nodes: unexpired leases plus expired ones awaiting reconciliation (still presumed spendable)."""
        live = sum(lease.amount for lease in self.leases.values() if lease.expires_ms > now_ms)
        return live + sum(s.amount for s in self.stranded.values())

    def reserved(self, now_ms: int) -> int:
        return sum(lease.reserved for lease in self.leases.values() if lease.expires_ms > now_ms)

    def remaining(self, now_ms: int) -> int:
        return max(0, self.limit - self.settled - self.leased(now_ms))

    def encode(self) -> bytes:
        return json.dumps(
            {
                "limit": self.limit, "settled": self.settled, "overshoot": self.overshoot, "reclaimed": self.reclaimed,
                "presumed_total": self.presumed_total,
                "leases": {n: [x.amount, x.expires_ms, x.reserved] for n, x in sorted(self.leases.items())},
                "seqs": {n: list(s) for n, s in sorted(self.seqs.items())},
                "stranded": {n: [x.amount, x.reserved, x.until_ms] for n, x in sorted(self.stranded.items())},
                "presumed": dict(sorted(self.presumed.items())),
                "reported": {n: list(r) for n, r in sorted(self.reported.items())},
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def decode(cls, raw: bytes) -> LedgerRecord:
        d = json.loads(raw)
        return cls(
            limit=int(d["limit"]), settled=int(d["settled"]), overshoot=int(d["overshoot"]),
            reclaimed=int(d.get("reclaimed", 0)),
            leases={n: Lease(*(int(v) for v in x)) for n, x in d["leases"].items()},
            seqs={n: (int(s), int(t)) for n, (s, t) in d.get("seqs", {}).items()},
            presumed_total=int(d.get("presumed_total", 0)),
            stranded={n: Stranded(*(int(v) for v in x)) for n, x in d.get("stranded", {}).items()},
            presumed={n: int(v) for n, v in d.get("presumed", {}).items()},
            reported={n: (int(a), int(b)) for n, (a, b) in d.get("reported", {}).items()},
        )
