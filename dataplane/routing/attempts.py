"""The order in which one request tries deployments: weighted (or session-sticky) within a target, then
retries with backoff, then the fallback targets; skipping open circuits and deployments a team may not use.

Pure apart from the breakers it consults: the proxy asks `next()` after each failed attempt and does the
sleeping and sending itself.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass

from dataplane.routing.backoff import backoff_s
from dataplane.routing.breaker import OPEN, Breakers
from dataplane.routing.table import Constraint, Plan, RuntimeDeployment, Target


@dataclass(slots=True)  # per request: a frozen dataclass's __init__ costs ~2x
class Next:
    deployment: RuntimeDeployment
    delay_s: float  # sleep this long first (a retry of a deployment already tried)


def weighted_order(deps: tuple[RuntimeDeployment, ...], rng: random.Random) -> list[RuntimeDeployment]:
    """Positive weights in weighted-random order (draws without replacement), weight-0 ones last."""
    if len(deps) == 2 and deps[0].weight > 0 and deps[1].weight > 0:  # the common case, without the general loop
        a, b = deps
        return [a, b] if rng.random() * (a.weight + b.weight) < a.weight else [b, a]
    pool = [d for d in deps if d.weight > 0]
    out: list[RuntimeDeployment] = []
    while len(pool) > 1:
        x = rng.random() * sum(d.weight for d in pool)
        for i, d in enumerate(pool):
            x -= d.weight
            if x < 0:
                out.append(pool.pop(i))
                break
        else:
            out.append(pool.pop())
    return out + pool + [d for d in deps if d.weight <= 0]


def sticky_order(deps: tuple[RuntimeDeployment, ...], session: str) -> list[RuntimeDeployment]:
    """Weighted rendezvous hashing: a session always ranks deployments the same way, shares follow the
    weights, and removing one deployment only moves the sessions that were on it."""

    def score(d: RuntimeDeployment) -> float:
        h = int.from_bytes(hashlib.blake2b(f"{session}\0{d.id}".encode(), digest_size=8).digest(), "big")
        u = (h + 1) / (2**64 + 2)  # (0, 1)
        return d.weight / -math.log(u)

    return sorted((d for d in deps if d.weight > 0), key=score, reverse=True) + [d for d in deps if d.weight <= 0]


class AttemptPlanner:
    __slots__ = ("_breakers", "_constraint", "_deadline", "_hints", "_i", "_order", "_rng", "_session", "_t",
                 "excluded", "plan", "skipped_open")

    def __init__(self, plan: Plan, *, constraint: Constraint | None, breakers: Breakers, rng: random.Random,
                 session: str = "", deadline: float = math.inf) -> None:
        self.plan = plan
        self._constraint = constraint
        self._breakers = breakers
        self._rng = rng
        self._session = session if plan.sticky else ""
        self._deadline = deadline
        self._t = 0
        self._i = 0
        self._order: list[RuntimeDeployment] | None = None
        self._hints: dict[str, float] = {}
        self.excluded: list[RuntimeDeployment] = []  # outside the team's constraints: never tried
        self.skipped_open: list[RuntimeDeployment] = []  # circuit open when its turn came

    @property
    def constraint(self) -> Constraint | None:
        return self._constraint

    def order_of(self, target: Target) -> list[RuntimeDeployment]:
        deps = target.deployments
        if self._constraint is not None:
            allowed = tuple(d for d in deps if self._constraint.permits(d))
            self.excluded += [d for d in deps if d not in allowed]
            deps = allowed
        if len(deps) <= 1:
            return list(deps)
        return sticky_order(deps, self._session) if self._session else weighted_order(deps, self._rng)

    def failed(self, dep: RuntimeDeployment, retry_after_s: float | None) -> None:
        if retry_after_s is not None:
            self._hints[dep.id] = retry_after_s

    def next(self, now: float) -> Next | None:
        plan = self.plan
        if now >= self._deadline:
            return None
        while self._t < len(plan.targets):
            if self._order is None:
                self._order = self.order_of(plan.targets[self._t])
                self._i = 0
            order = self._order
            n = len(order)
            if not n or self._i >= n + plan.retries:
                self._advance()
                continue
            dep = order[self._i % n]
            self._i += 1
            delay = 0.0
            if self._i > n:  # a retry of a deployment this request already tried
                delay = backoff_s(self._i - n - 1, plan.backoff_s, plan.max_backoff_s, self._rng.random())
                hint = self._hints.get(dep.id)
                if hint is not None:
                    if hint > plan.max_retry_after_s:
                        self._advance()  # told to wait longer than we may: try the fallbacks instead
                        continue
                    delay = max(delay, hint)
                if now + delay >= self._deadline:
                    self._advance()
                    continue
            b = self._breakers.get(dep.id, dep.breaker)
            if b is not None and b.current(now + delay) == OPEN:
                if dep not in self.skipped_open:
                    self.skipped_open.append(dep)
                continue
            return Next(dep, delay)
        return None

    def _advance(self) -> None:
        self._t += 1
        self._order = None
