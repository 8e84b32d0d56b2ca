"""The governed pass-through: run the request pipeline (dataplane/pipeline/stages.py), settle, emit one event.

The stages are authenticate, tags, input guardrails, route plan, budget admission, attempts, output guardrails,
over one RequestContext (dataplane/pipeline/context.py), the only writer of the response. The attempt loop (fallback, retries, breakers) is dataplane/pipeline/attempt_loop.py; one attempt against one
deployment (translation, provider request, relay) is dataplane/pipeline/attempt.py.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from dataplane.budget.gate import BudgetGate
from dataplane.dialects.client_errors import GatewayError
from dataplane.http.messages import Request, Responder
from dataplane.pipeline.attempt import Forwarder
from dataplane.pipeline.attempt_loop import AttemptLoop
from dataplane.pipeline.context import RequestContext
from dataplane.pipeline.endpoint import Endpoint
from dataplane.pipeline.stages import GuardrailStage, Pipeline
from dataplane.pipeline.upstream import Upstream
from dataplane.routing.breaker import Breakers
from dataplane.snapshot.policy import CompiledPolicy
from dataplane.translate.binding import Translations
from dataplane.usage.event import EventIds, RequestRecord

if TYPE_CHECKING:
    from dataplane.loopguard.stage import LoopStage
    from dataplane.observe.node import RequestObserver
    from dataplane.observe.tracing import Tracing
    from dataplane.usage.sink import UsageSink

__all__ = ["Endpoint", "Proxy"]


class Proxy:
    def __init__(
        self, *, policy: Callable[[], CompiledPolicy | None], pepper: bytes, upstream: Upstream, sink: UsageSink,
        node_id: str, clock: Callable[[], float] = time.time,
        budgets: BudgetGate | None = None, translations: Translations | None = None,
        monotonic: Callable[[], float] = time.monotonic, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None, breakers: Breakers | None = None, guardrails: GuardrailStage | None = None,
        observer: RequestObserver | None = None, loops: LoopStage | None = None, tracing: Tracing | None = None,
    ):
        self._sink = sink
        self._node_id = node_id
        self._clock = clock
        self._ids = EventIds()
        self._budgets = budgets
        self._observer = observer  # metrics + access log (dataplane/observe/); None when both are off
        self._loops = loops  # runaway-loop breaker (dataplane/loopguard/)
        self._tracing = tracing  # OpenTelemetry spans (dataplane/observe/tracing.py); None = off, no cost
        forwarder = Forwarder(upstream=upstream, translations=translations, clock=clock, monotonic=monotonic)
        self._loop = AttemptLoop(forwarder, breakers=breakers or Breakers(monotonic), clock=clock, monotonic=monotonic,
                                 sleep=sleep, rng=rng or random.Random())
        self.breakers = self._loop.breakers  # per node, kept across snapshot swaps
        self.pipeline = Pipeline(policy=policy, pepper=pepper, clock=clock, loop=self._loop, budgets=budgets,
                                 guardrails=guardrails, loops=loops)

    async def handle(self, req: Request, resp: Responder, ep: Endpoint) -> None:
        rec = RequestRecord(self._ids, ep.dialect.family, ep.path, len(req.body))
        ctx = RequestContext(req, resp, ep, rec, self._seal)
        try:
            await self.pipeline.run(ctx)
        except GatewayError as exc:
            await ctx.fail(exc)
        finally:
            ctx.seal()  # nothing was sent (e.g. the client left): the event still goes out, once
            if self._loops is not None and rec.cost_pico:
                self._loops.settle(ctx.policy, rec.key, rec.cost_pico)
            if rec.budget is not None and self._budgets is not None:
                self._budgets.settle(rec.budget, rec.usage, rec.model, rec.price)  # bill what was produced, free the rest
            if self._observer is not None:
                self._observer.done(rec)
            if self._tracing is not None:
                self._tracing.done(rec, req.headers)

    def _seal(self, ctx: RequestContext) -> None:
        """The usage event, made durable (WAL append) by the response's writer just before the client's last
        byte: a kill -9 after the client has its whole answer cannot lose it (tests/e2e/test_usage_no_loss.py)."""
        rec = ctx.rec
        rec.done_s = self._clock()
        rec.client_disconnected = rec.client_disconnected or ctx.disconnected
        if rec.price is not None:
            rec.cost_pico = rec.price.cost_pico(rec.usage)
        self._sink.emit(rec.to_event(self._node_id))
