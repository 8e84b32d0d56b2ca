"""Per-deployment circuit breakers: closed -> open on failures, half-open probe after a cool-down.

State is per data-plane node and survives snapshot swaps (keyed by "model/deployment"). The
clock is injected (monotonic seconds), so the state machine is tested without sleeping.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    enabled: bool = True
    failures: int = 5
    failure_rate: float = 0.5
    min_requests: int = 20
    window_s: float = 30.0
    cooldown_s: float = 30.0


class CircuitBreaker:
    __slots__ = ("config", "consecutive", "opened_at", "probing", "state", "window_failed", "window_start",
                 "window_total")

    def __init__(self, config: BreakerConfig, now: float) -> None:
        self.config = config
        self.state = CLOSED
        self.consecutive = 0
        self.window_start = now
        self.window_total = self.window_failed = 0
        self.opened_at = 0.0
        self.probing = False

    def current(self, now: float) -> str:
        """The state as a request would see it now, without taking the half-open probe slot."""
        if self.state == OPEN and now >= self.opened_at + self.config.cooldown_s:
            return HALF_OPEN
        return self.state

    def retry_in(self, now: float) -> float:
        return max(0.0, self.opened_at + self.config.cooldown_s - now) if self.state == OPEN else 0.0

    def allow(self, now: float) -> bool:
        """May a request go to this deployment now? In half-open, only one probe at a time."""
        if self.state == CLOSED:
            return True
        if self.state == OPEN:
            if now < self.opened_at + self.config.cooldown_s:
                return False
            self.state = HALF_OPEN
            self.probing = False
        if self.probing:
            return False
        self.probing = True
        return True

    def release(self, now: float) -> None:
        """An allowed request ended without an outcome about the deployment (e.g. the client left)."""
        self.probing = False

    def record(self, ok: bool, now: float) -> None:
        if self.state == HALF_OPEN:
            self.probing = False
            if ok:
                self._close(now)
            else:
                self._open(now)
            return
        if self.state == OPEN:
            return  # a straggler that started before the circuit opened
        if now - self.window_start >= self.config.window_s:
            self.window_start, self.window_total, self.window_failed = now, 0, 0
        self.window_total += 1
        if ok:
            self.consecutive = 0
            return
        self.consecutive += 1
        self.window_failed += 1
        c = self.config
        if self.consecutive >= c.failures or (
            self.window_total >= c.min_requests and self.window_failed >= c.failure_rate * self.window_total
        ):
            self._open(now)

    def _open(self, now: float) -> None:
        self.state, self.opened_at, self.probing = OPEN, now, False

    def _close(self, now: float) -> None:
        self.state, self.consecutive = CLOSED, 0
        self.window_start, self.window_total, self.window_failed = now, 0, 0


class Breakers:
    """The node's breakers, created on first use; a changed config (new policy) applies from then on."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self._by_id: dict[str, CircuitBreaker] = {}

    def get(self, dep_id: str, config: BreakerConfig) -> CircuitBreaker | None:
        if not config.enabled:
            return None
        b = self._by_id.get(dep_id)
        if b is None:
            b = self._by_id[dep_id] = CircuitBreaker(config, self.clock())
        elif b.config is not config:
            b.config = config
        return b

    def states(self) -> list[tuple[str, str]]:
        """(deployment id, state) of every breaker used on this node, for GET /metrics."""
        now = self.clock()
        return [(dep_id, b.current(now)) for dep_id, b in self._by_id.items()]

    def state(self, dep_id: str) -> str:
        """For explain: "closed" | "open" | "half_open" | "unknown" (never used on this node)."""
        b = self._by_id.get(dep_id)
        return b.current(self.clock()) if b is not None else "unknown"
