"""Admission and settlement for budgets and rate limits on the request path.

admit(): every budget and rate limit that applies to the request (looked up in the snapshot's BudgetIndex)
gets a claim on its local lease pool; the claims are reserved all-or-nothing. In the steady state this is
a few dict gets and integer compares, no I/O. When a pool's lease cannot cover the claim, the request
waits (bounded by `wait_s`) for the lease client's next sync, which asks the control plane for more;
it is refused when the window's spend can never cover it, when the wait runs out, or offline.

settle(): after the response, each claim is settled with the actual amount (cost from the provider's
usage at the budget price, tokens used, one request; a concurrency slot is just released) and the
rest of the reservation is freed. Actual above the reservation is overshoot, counted per limit.

Streams: the reservation covers the whole stream (output is bounded by the request's max tokens or the
model's maximum, which the provider enforces), so a stream is never cut for budget reasons; it is billed
exactly what was produced (the provider's final usage, or, if it never arrives, the proxy's estimate from
what was relayed).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from dataplane.budget.allowance import AllowanceBook
from dataplane.budget.estimate import input_tokens_upper_bound, output_tokens_upper_bound, worst_case
from dataplane.budget.index import BUDGET, CONCURRENCY, REQUESTS, TOKENS, BudgetIndex, BudgetSpec, RateSpec
from dataplane.budget.pool import LeasePool, PoolKey
from dataplane.budget.refusal import budget_busy, budget_exhausted, budget_offline, budget_stale, rate_limited
from dataplane.dialects.base import Dialect, Usage
from dataplane.dialects.client_errors import GatewayError
from dataplane.policy_types import Route, RuntimeModel
from dataplane.pricing import Price
from interlock_contracts.budget_windows import LIFETIME, Window, current_window

FREE_OPERATIONS = frozenset({"count_tokens"})
NO_OUTPUT_OPERATIONS = frozenset({"embeddings", "count_tokens"})


@dataclass(slots=True)
class Claim:
    pool: LeasePool
    amount: int
    spec: BudgetSpec | RateSpec
    window: Window


@dataclass(slots=True)
class Ticket:
    claims: list[Claim]
    price: Price  # the reserved model's budget price (settle uses the served model's when told)
    index: BudgetIndex
    output_tokens: int = 0  # the output the reservation covers (bound.bound_output caps the request at it)


class Syncer(Protocol):
    """What the gate needs from the lease client (None: no control plane configured)."""

    @property
    def online(self) -> bool: ...

    def wake(self) -> None: ...

    def synced(self) -> asyncio.Event: ...


class PoolTable:
    """Every lease pool this node holds, shared by the gate (creates, reserves) and the lease client (syncs)."""

    def __init__(self, allowances: AllowanceBook | None = None) -> None:
        self.allowances = allowances if allowances is not None else AllowanceBook(None)
        self.pools: dict[tuple[int, str, str], LeasePool] = {}  # (kind, limit id, window key): tuple hashing is cheap
        self.online = False
        # Lifetime counters per (kind, limit id), exported as metrics; pools come and go with windows.
        self.overshoot: dict[tuple[int, str], int] = {}
        self.refused: dict[tuple[int, str], int] = {}
        # Acknowledged cumulative spend of pools dropped while idle, restored if the same window's pool comes back
        # (the ledger remembers this process's totals; restarting them at 0 would hide new spend).
        self.acked: dict[tuple[int, str, str], tuple[int, int]] = {}

    def drop(self, key: tuple[int, str, str]) -> None:
        """Forget an idle pool, keeping its acknowledged totals (only the latest window's, per limit)."""
        p = self.pools.pop(key)
        for old in [k for k in self.acked if k[:2] == key[:2] and k != key]:
            del self.acked[old]
        self.acked[key] = (p.acked_settled, p.acked_overshoot)

    def pool(self, kind: int, spec: BudgetSpec | RateSpec, window_key: str, now_ms: int) -> LeasePool:
        p = self.pools.get((kind, spec.id, window_key))
        if p is None:
            p = LeasePool(PoolKey(kind, spec.id, window_key), spec.offline_mode,
                          spec.optimistic_pico if isinstance(spec, BudgetSpec) else 0)
            key = (kind, spec.id, window_key)
            p.acked_settled, p.acked_overshoot = self.acked.get(key, (0, 0))
            if p.optimistic:
                p.allowance_used = self.allowances.used(key)
                p.on_draw = lambda amount: self.allowances.draw(key, amount)
            if not self.online:
                p.go_offline(now_ms)
            self.pools[(kind, spec.id, window_key)] = p
        return p


class BudgetGate:
    def __init__(self, table: PoolTable, *, clock: Callable[[], float], wait_s: float = 2.0,
                 syncer: Syncer | None = None) -> None:
        self._table = table
        self._clock = clock
        self._wait_s = wait_s
        self._syncer = syncer
        self._contact_age_s: Callable[[], float] | None = None
        self._windows: dict[tuple[str, str], Window] = {}

    def attach(self, syncer: Syncer) -> None:
        self._syncer = syncer

    def attach_contact(self, contact_age_s: Callable[[], float]) -> None:
        """Seconds since the control plane was last heard from (staleness; None = no control plane)."""
        self._contact_age_s = contact_age_s

    def _window(self, window: str, tz: str, now_s: float, now_ms: int) -> Window:
        w = self._windows.get((window, tz))
        if w is None or (w.reset_unix_ms and now_ms >= w.reset_unix_ms):
            w = current_window(window, tz, now_s)
            self._windows[(window, tz)] = w
        return w

    async def admit(
        self, idx: BudgetIndex, key_id: str, tags: Mapping[str, str], requested: str, route: Route, raw: bytes,
        body: dict[str, Any], max_output: int | None, dialect: Dialect, operation: str = "",
        alternatives: Sequence[RuntimeModel] = (),
    ) -> Ticket | None:
        """Reserve the request's worst case on every applicable limit, or raise the refusal (GatewayError).

        `alternatives`: every model the request may be served by (fallback); the reservation covers the dearest.
        Token counting (`count_tokens`) costs nothing: only request-count and concurrency limits apply.
        Embeddings produce no output tokens."""
        if idx.empty:
            return None
        model = route.model
        free = operation in FREE_OPERATIONS
        budgets = () if free else idx.budgets_for(key_id, tags)
        rates = idx.rates_for(key_id, requested, model.name) if idx.rates else ()
        if not budgets and not rates:
            return None
        if self._contact_age_s is not None:
            for b in budgets:
                if b.max_staleness_ms and (age := self._contact_age_s()) * 1000 > b.max_staleness_ms:
                    raise budget_stale(b, age, b.max_staleness_ms / 1000)
        now_s = self._clock()
        now_ms = int(now_s * 1000)
        price = idx.price_for(model.name, model.price)
        in_tok = input_tokens_upper_bound(raw)
        no_output = operation in NO_OUTPUT_OPERATIONS
        out_tok = 0 if no_output else output_tokens_upper_bound(
            max_output, body, model.max_output_tokens, idx.default_max_output_tokens)
        cost = worst_case(in_tok, out_tok, price).cost_pico
        for alt in alternatives:
            if alt is not model:
                alt_out = 0 if no_output else output_tokens_upper_bound(
                    max_output, body, alt.max_output_tokens, idx.default_max_output_tokens)
                cost = max(cost, worst_case(in_tok, alt_out, idx.price_for(alt.name, alt.price)).cost_pico)
                out_tok = max(out_tok, alt_out)
        table = self._table
        claims: list[Claim] = []
        for b in budgets:
            w = self._window(b.window, b.timezone, now_s, now_ms)
            claims.append(Claim(table.pool(BUDGET, b, w.key, now_ms), cost, b, w))
        for r in rates:
            if r.requests_per_minute or r.tokens_per_minute:
                w = self._window("minute", "UTC", now_s, now_ms)
                if r.requests_per_minute:
                    claims.append(Claim(table.pool(REQUESTS, r, w.key, now_ms), 1, r, w))
                if r.tokens_per_minute and not free:
                    claims.append(Claim(table.pool(TOKENS, r, w.key, now_ms), in_tok + out_tok, r, w))
            if r.max_concurrent:
                claims.append(Claim(table.pool(CONCURRENCY, r, LIFETIME, now_ms), 1, r, _LIFETIME))
        deadline = 0.0
        while True:
            short = _reserve(claims, now_ms)
            if short is None:
                syncer = self._syncer
                if syncer is not None and any(c.pool.available(now_ms) < c.amount for c in claims):
                    syncer.wake()  # low-water mark: top the lease up before the next such request has to wait
                return Ticket(claims, price, idx, out_tok if budgets else 0)
            hopeless = self._hopeless(short, now_ms, dialect)
            if hopeless is not None:
                raise hopeless
            syncer = self._syncer
            mono = asyncio.get_running_loop().time()  # the wait is bounded in real time, whatever the clock says
            deadline = deadline or mono + self._wait_s
            if syncer is None or not syncer.online or mono >= deadline:
                raise self._refusal(short, now_ms, dialect)
            await self._wait_for_lease(claims, syncer, deadline - mono)
            now_s = self._clock()
            now_ms = int(now_s * 1000)
            for c in claims:  # a pool the sync found idle was dropped meanwhile: use (or re-create) the table's
                k = c.pool.key
                c.pool = table.pool(k.kind, c.spec, k.window_key, now_ms)

    async def _wait_for_lease(self, claims: list[Claim], syncer: Syncer, wait_s: float) -> None:
        # Every pool of the request asks at once: a lease for one must not be handed back while another is refilled.
        for c in claims:
            p = c.pool
            p.waiting += c.amount
            p.waiting_max = max(p.waiting_max, c.amount)
        synced = syncer.synced()
        syncer.wake()
        try:
            async with asyncio.timeout(wait_s):
                await synced.wait()
        except TimeoutError:
            pass

    def settle(self, ticket: Ticket, usage: Usage, model: str = "", price: Price | None = None) -> None:
        """`model`/`price`: the model that actually served the request (after fallback), if known."""
        if price is not None:
            ticket.price = ticket.index.price_for(model, price)
        cost = -1
        for c in ticket.claims:
            kind = c.pool.key.kind
            if kind == BUDGET:
                if cost < 0:
                    cost = ticket.price.cost_pico(usage)
                actual = cost
            elif kind == TOKENS:
                actual = usage.input_tokens + usage.output_tokens
            elif kind == REQUESTS:
                actual = 1
            else:
                actual = 0  # a concurrency slot is released, never spent
            c.pool.settle(c.amount, actual)
            if actual > c.amount:
                k = (kind, c.spec.id)
                self._table.overshoot[k] = self._table.overshoot.get(k, 0) + actual - c.amount

    # ---- refusals ---------------------------------------------------------------------------------------
    def _hopeless(self, c: Claim, now_ms: int, dialect: Dialect) -> GatewayError | None:
        """Refuse at once when waiting cannot help: the window's unspent amount is below the claim."""
        limit = _limit_of(c)
        led = c.pool.ledger
        unspent = limit - (led.settled if led else 0) - c.pool.spent
        if c.amount <= unspent:
            return None
        self._count_refusal(c)
        if isinstance(c.spec, BudgetSpec):
            return budget_exhausted(c.spec, c.window.key, c.window.reset_unix_ms, unspent, c.amount, now_ms)
        if c.pool.key.kind == CONCURRENCY:
            return None  # slots come back as requests finish
        return rate_limited(c.spec, c.pool.key.kind, limit, unspent, c.window.reset_unix_ms, now_ms, dialect)

    def _refusal(self, c: Claim, now_ms: int, dialect: Dialect) -> GatewayError:
        self._count_refusal(c)
        offline = not (self._syncer is not None and self._syncer.online)
        led = c.pool.ledger
        limit = _limit_of(c)
        if isinstance(c.spec, BudgetSpec):
            if offline:
                return budget_offline(c.spec)
            return budget_busy(c.spec, c.window.key, limit - (led.settled if led else 0) - c.pool.spent)
        remaining = max(0, c.pool.available(now_ms)) + (led.remaining if led else 0)
        return rate_limited(c.spec, c.pool.key.kind, limit, remaining, c.window.reset_unix_ms, now_ms, dialect, offline)

    def _count_refusal(self, c: Claim) -> None:
        k = (c.pool.key.kind, c.spec.id)
        self._table.refused[k] = self._table.refused.get(k, 0) + 1


_LIFETIME = Window(LIFETIME, 0, 0)


def _limit_of(c: Claim) -> int:
    s = c.spec
    if isinstance(s, BudgetSpec):
        return s.limit_pico
    kind = c.pool.key.kind
    return s.requests_per_minute if kind == REQUESTS else s.tokens_per_minute if kind == TOKENS else s.max_concurrent


def _reserve(claims: list[Claim], now_ms: int) -> Claim | None:
    """All-or-nothing: the first claim that does not fit, or None when every claim was reserved."""
    for c in claims:
        if c.pool.available(now_ms) < c.amount:
            return c
    for c in claims:
        c.pool.take(c.amount, now_ms)
    return None
