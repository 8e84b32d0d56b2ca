"""The attempt loop: try a plan's deployments until one answers, under their circuit breakers.

A retryable failure moves on only while nothing has reached the client. A plan with one deployment,
no retry, no fallback and no total timeout (decided at snapshot swap: Plan.single) is tried once
directly, without an AttemptPlanner: the same outcome as the loop, without per-request planning.
"""

from __future__ import annotations

import math
import random
from collections.abc import Awaitable, Callable
from typing import Any

from dataplane.dialects.base import ErrorKind
from dataplane.dialects.client_errors import GatewayError
from dataplane.pipeline.attempt import Forwarder, Outcome, parse_body
from dataplane.pipeline.context import RequestContext
from dataplane.routing.attempts import AttemptPlanner
from dataplane.routing.breaker import Breakers, CircuitBreaker
from dataplane.routing.failure import UNHEALTHY
from dataplane.routing.select import session_of
from dataplane.routing.table import Plan, RuntimeDeployment
from dataplane.usage.event import RequestRecord


class AttemptLoop:
    def __init__(self, forwarder: Forwarder, *, breakers: Breakers, clock: Callable[[], float],
                 monotonic: Callable[[], float], sleep: Callable[[float], Awaitable[None]], rng: random.Random) -> None:
        self._fwd = forwarder
        self.breakers = breakers  # per node, kept across snapshot swaps
        self._clock = clock
        self._monotonic = monotonic
        self._sleep = sleep
        self._rng = rng

    async def run(self, ctx: RequestContext) -> None:
        plan, constraint = ctx.plan, ctx.constraint
        assert plan is not None
        if plan.single is not None and constraint is None:
            return await self._once(ctx, plan.single, plan)
        deadline = self._monotonic() + plan.total_timeout_s if plan.total_timeout_s else math.inf
        planner = AttemptPlanner(plan, constraint=constraint, breakers=self.breakers, rng=self._rng,
                                 session=session_of(ctx.req.headers, ctx.rec.tags) if plan.sticky else "",
                                 deadline=deadline)
        await self._attempts(ctx, planner, deadline)

    async def _once(self, ctx: RequestContext, dep: RuntimeDeployment, plan: Plan) -> None:
        """The loop below for a plan of one attempt: an open circuit (or a half-open probe already taken)
        answers 503 as if the planner had skipped it; a retryable failure is sent as the last one."""
        breaker = self.breakers.get(dep.id, dep.breaker)
        if breaker is not None and not breaker.allow(self._monotonic()):
            raise self._circuit_open(ctx.rec, [dep])
        started = self._monotonic()
        outcome: Outcome | None = None
        try:
            outcome = await self._fwd.attempt(ctx, ctx.body, dep, plan, math.inf)
        except GatewayError as exc:
            if not ctx.started:
                self._fwd.note(ctx.rec, dep, exc.status, exc.kind, started)  # e.g. no translation to this API
            raise
        finally:
            if breaker is not None:
                self._settle_breaker(breaker, outcome)
        if outcome.retry:
            self._send_last(ctx, outcome)

    async def _attempts(self, ctx: RequestContext, planner: AttemptPlanner, deadline: float) -> None:
        """Try deployments in the planner's order until one answers; a retryable failure moves on only while
        nothing has reached the client. Each attempt picks its own adapter and translation."""
        rec = ctx.rec
        last: Outcome | None = None
        refused: GatewayError | None = None  # the first deployment that cannot serve this request (e.g. no translation)
        while (nxt := planner.next(self._monotonic())) is not None:
            if nxt.delay_s:
                await self._sleep(nxt.delay_s)
            if last is not None and ctx.disconnected:  # the client left while we were failing over
                rec.client_disconnected = True
                break
            dep = nxt.deployment
            breaker = self.breakers.get(dep.id, dep.breaker)
            if breaker is not None and not breaker.allow(self._monotonic()):
                planner.skipped_open.append(dep)  # another request holds the half-open probe
                continue
            # the first attempt may consume the parsed body; later ones get a fresh copy (adapters rewrite it)
            attempt_body: dict[str, Any] = ctx.body if not rec.attempts else parse_body(ctx.req.body)
            started = self._monotonic()
            outcome: Outcome | None = None
            try:
                outcome = await self._fwd.attempt(ctx, attempt_body, dep, planner.plan, deadline)
            except GatewayError as exc:
                if ctx.started:
                    raise
                self._fwd.note(rec, dep, exc.status, exc.kind, started)  # e.g. no translation to this deployment's API
                refused = refused or exc
                continue  # a deployment this request cannot use: try the next; a real failure outranks this one
            finally:
                if breaker is not None:
                    self._settle_breaker(breaker, outcome)
            if not outcome.retry:
                return
            planner.failed(dep, outcome.retry_after_s)
            last = outcome
        if last is None:  # an open circuit is the real failure; a deployment that cannot serve this is not
            raise self._nothing_tried(rec, planner) if planner.skipped_open or refused is None else refused
        self._send_last(ctx, last)

    def _settle_breaker(self, breaker: CircuitBreaker, outcome: Outcome | None) -> None:
        if outcome is None or outcome.error_class == "unavailable":  # the deployment was not asked
            breaker.release(self._monotonic())
        else:
            breaker.record(outcome.error_class not in UNHEALTHY, self._monotonic())

    def _send_last(self, ctx: RequestContext, last: Outcome) -> None:
        """No attempt is left: answer with the last retryable failure."""
        rec = ctx.rec
        rec.status, rec.error_class = last.status, last.error_class
        rec.first_byte_s = self._clock()
        if last.exc is not None:
            raise last.exc
        ctx.send(last.status, last.ctype, last.payload, last.extra)

    def _nothing_tried(self, rec: RequestRecord, planner: AttemptPlanner) -> GatewayError:
        if planner.skipped_open:
            return self._circuit_open(rec, planner.skipped_open)
        team = rec.key.team_id if rec.key else ""
        limits = planner.constraint.describe() if planner.constraint is not None else "allowed regions/providers"
        return GatewayError(403, ErrorKind.PERMISSION, f"team {team!r} may not reach any deployment of model "
                            f"{rec.requested_model!r} (team limits: {limits}); "
                            "ask your platform team for a model that runs where you are allowed")

    def _circuit_open(self, rec: RequestRecord, skipped: list[RuntimeDeployment]) -> GatewayError:
        names = ", ".join(d.id for d in skipped)
        now = self._monotonic()
        waits = [b.retry_in(now) for d in skipped if (b := self.breakers.get(d.id, d.breaker))]
        wait = max(1, math.ceil(min(waits, default=1)))  # until the first circuit lets a probe through
        return GatewayError(503, ErrorKind.OVERLOADED, f"every deployment for model {rec.requested_model!r} is "
                            f"failing (circuit open: {names}); retry in {wait}s", (("retry-after", str(wait)),))
