"""The governed pass-through: authenticate, admit, forward, stream back, capture usage, emit one event.

The attempt loop (fallback, retries, breakers) is dataplane/attempt_loop.py; one attempt against one
deployment (translation, provider request, relay) is dataplane/attempt.py.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from dataplane.admission import authenticate, presented_key
from dataplane.attempt import Endpoint, Forwarder, parse_body, record_model
from dataplane.attempt_loop import AttemptLoop
from dataplane.budget.bound import bound_output
from dataplane.budget.gate import BudgetGate
from dataplane.dialects.base import ErrorKind
from dataplane.gateway_errors import GatewayError, bad_request
from dataplane.http.messages import Request, Responder
from dataplane.policy import CompiledPolicy, Route
from dataplane.routing.breaker import Breakers
from dataplane.routing.report import route_headers
from dataplane.routing.select import plan_for
from dataplane.tags import TAGS_HEADER, missing, request_tags
from dataplane.translate.binding import Translations
from dataplane.upstream import Upstream
from dataplane.usage_event import EventIds, RequestRecord

if TYPE_CHECKING:
    from dataplane.usage_sink import UsageSink

__all__ = ["Endpoint", "Proxy"]


class Proxy:
    def __init__(
        self, *, policy: Callable[[], CompiledPolicy | None], pepper: bytes, upstream: Upstream, sink: UsageSink,
        node_id: str, clock: Callable[[], float] = time.time,
        budgets: BudgetGate | None = None, translations: Translations | None = None,
        monotonic: Callable[[], float] = time.monotonic, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None, breakers: Breakers | None = None,
    ):
        self._policy = policy
        self._pepper = pepper
        self._sink = sink
        self._node_id = node_id
        self._clock = clock
        self._ids = EventIds()
        self._budgets = budgets
        forwarder = Forwarder(upstream=upstream, translations=translations, clock=clock, monotonic=monotonic)
        self._loop = AttemptLoop(forwarder, breakers=breakers or Breakers(monotonic), clock=clock, monotonic=monotonic,
                                 sleep=sleep, rng=rng or random.Random())
        self.breakers = self._loop.breakers  # per node, kept across snapshot swaps

    async def handle(self, req: Request, resp: Responder, ep: Endpoint) -> None:
        rec = RequestRecord(self._ids, ep.dialect.name, ep.path, len(req.body))
        try:
            await self._forward(req, resp, ep, rec)
        except GatewayError as exc:
            rec.status = exc.status
            rec.error_class = rec.error_class or exc.kind
            if not resp.started:
                resp.send(exc.status, "application/json", ep.dialect.error_body(exc.status, exc.kind, exc.message),
                          (("x-interlock-request-id", rec.event_id), *exc.headers,
                           *route_headers(rec.route_rule, rec.attempts)))
            else:
                await resp.write(ep.dialect.stream_error_event(exc.kind, exc.message))
                resp.end_stream()
        finally:
            rec.done_s = self._clock()
            rec.client_disconnected = rec.client_disconnected or resp.disconnected
            if rec.price is not None:
                rec.cost_pico = rec.price.cost_pico(rec.usage)
            if rec.budget is not None and self._budgets is not None:
                self._budgets.settle(rec.budget, rec.usage, rec.model, rec.price)  # bill what was produced, free the rest
            self._sink.emit(rec.to_event(self._node_id))

    async def _forward(self, req: Request, resp: Responder, ep: Endpoint, rec: RequestRecord) -> None:
        policy = self._policy()
        if policy is None:
            raise GatewayError(503, ErrorKind.UNAVAILABLE, "this gateway node has no valid policy yet; retry shortly",
                               (("retry-after", "1"),))
        rec.policy_version = policy.version
        key = authenticate(policy, self._pepper, presented_key(req.headers, req.query), int(self._clock() * 1000))
        rec.key = key
        rec.tags = key.tags  # what the event carries if the body turns out unusable (not mutated: no copy)
        body = parse_body(req.body)
        rec.tags = request_tags(key.tags, req.headers, body)
        if key.required_tags and (absent := missing(key.required_tags, rec.tags)):
            raise bad_request(
                f"team {key.team_id!r} requires the tags {', '.join(absent)}: send them as "
                f"'{TAGS_HEADER}: " + ",".join(f"{t}=..." for t in absent) + "'"
            )
        requested = ep.dialect.requested_model(req.path, body)  # Gemini names it in the URL, others in the body
        if not requested:
            raise bad_request("the request body must name a model, e.g. {\"model\": \"...\"}")
        stream = ep.dialect.wants_stream(req.path, body)
        rec.requested_model, rec.stream = requested, stream
        plan = plan_for(policy, key, requested, req.headers, rec.tags, body, len(req.body))
        rec.route_rule = plan.rule_id
        named = policy.routes.get(requested)
        rec.alias = named.alias if named is not None else ""
        first = plan.targets[0].deployments[0].model  # the first choice (budgets reserve for it)
        record_model(rec, first)
        # budgets and rate limits (dataplane/budget/): reserve the worst case or refuse; nothing to do (no
        # coroutine, no argument building) when the policy has no limit at all
        if self._budgets is not None and not policy.budgets.empty:
            rec.budget = await self._budgets.admit(policy.budgets, key.id, rec.tags, requested, Route(first, rec.alias),
                                                   req.body, body, ep.dialect.max_output_tokens(body), ep.dialect.name,
                                                   ep.operation, [d.model for t in plan.targets for d in t.deployments])
            if rec.budget is not None:  # the provider may not produce more output than was reserved
                bound_output(ep.operation, body, ep.dialect.max_output_tokens(body), rec.budget.output_tokens)
        await self._loop.run(req, resp, ep, rec, body, plan, policy.routing.constraints.get(key.team_id), stream,
                             rec.tags)
