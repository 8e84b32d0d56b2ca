"""The request pipeline as explicit stages, in order:

1. authenticate      the virtual key (and the policy snapshot the request is served under)
2. tags              attribution tags, required tags
3. input guardrails  scan (and redact or refuse) what the client sends
4. route plan        which deployments may serve it
5. budget admission  reserve the worst case or refuse
6. attempts          the attempt loop (fallback, retries, breakers), relaying the answer
7. output guardrails installed on the context before the attempts, so they see every byte written

Each stage reads and fills the RequestContext; a refusal is a GatewayError, which Pipeline.run turns into the
client's own error format through the context (the only writer of the response).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from dataplane.budget.bound import bound_output
from dataplane.dialects.base import ErrorKind
from dataplane.dialects.client_errors import GatewayError, bad_request
from dataplane.pipeline.admission import authenticate, presented_key
from dataplane.pipeline.attempt import parse_body, record_model
from dataplane.pipeline.attempt_loop import AttemptLoop
from dataplane.pipeline.context import RequestContext
from dataplane.pipeline.output_cap import attach_output_cap
from dataplane.pipeline.request_validation import validate as validate_request
from dataplane.pipeline.tags import TAGS_HEADER, missing, request_tags
from dataplane.routing.select import plan_for
from dataplane.snapshot.policy import CompiledPolicy, Route

if TYPE_CHECKING:
    from dataplane.budget.gate import BudgetGate
    from dataplane.loopguard.stage import LoopStage


class GuardrailStage(Protocol):
    """Input and output guardrails (dataplane/pipeline/guardrail_stage.py); None when the node runs without them."""

    def check_input(self, ctx: RequestContext) -> None: ...

    def check_routed_input(self, ctx: RequestContext) -> None: ...

    def attach_output(self, ctx: RequestContext) -> None: ...


class Pipeline:
    def __init__(self, *, policy: Callable[[], CompiledPolicy | None], pepper: bytes, clock: Callable[[], float],
                 loop: AttemptLoop, budgets: BudgetGate | None, guardrails: GuardrailStage | None = None,
                 loops: LoopStage | None = None) -> None:
        self._policy = policy
        self._pepper = pepper
        self._clock = clock
        self._loop = loop
        self._budgets = budgets
        self.guardrails = guardrails
        self._loops = loops  # runaway-loop breaker (dataplane/loopguard/): refuses a paused or looping key

    async def run(self, ctx: RequestContext) -> None:
        self.authenticate(ctx)
        self.tags(ctx)
        guardrails = self.guardrails
        if guardrails is not None:
            guardrails.check_input(ctx)
        self.route(ctx)
        if guardrails is not None:
            guardrails.check_routed_input(ctx)  # guardrails attached to the routing rule just chosen
        if self._budgets is not None and ctx.policy is not None and not ctx.policy.budgets.empty:
            await self.admit(ctx)
        if guardrails is not None:
            guardrails.attach_output(ctx)
        if ctx.rec.budget is not None and ctx.stream:
            attach_output_cap(ctx)  # a stream past its reserved output is cut there (dataplane/pipeline/output_cap.py)
        await self._loop.run(ctx)

    # 1
    def authenticate(self, ctx: RequestContext) -> None:
        policy = self._policy()
        if policy is None:
            raise GatewayError(503, ErrorKind.UNAVAILABLE, "this gateway node has no valid policy yet; retry shortly",
                               (("retry-after", "1"),))
        ctx.policy = policy
        ctx.rec.policy_version = policy.version
        req = ctx.req
        # ?key= only where Google's API puts it: elsewhere it would land keys in URLs and access logs
        query = req.query if ctx.ep.dialect.key_in_query else ""
        key = authenticate(policy, self._pepper, presented_key(req.headers, query), int(self._clock() * 1000))
        ctx.key = ctx.rec.key = key
        ctx.rec.tags = key.tags  # what the event carries if the body turns out unusable (not mutated: no copy)

    # 2
    def tags(self, ctx: RequestContext) -> None:
        key, rec = ctx.key, ctx.rec
        assert key is not None
        ctx.body = body = parse_body(ctx.req.body)
        validate_request(ctx.ep.dialect.family, ctx.ep.operation, body)  # typed fields: what is forwarded is metered
        rec.tags = request_tags(key.tags, ctx.req.headers, body, key.locked_tags)
        if key.required_tags and (absent := missing(key.required_tags, rec.tags)):
            raise bad_request(
                f"team {key.team_id!r} requires the tags {', '.join(absent)}: send them as "
                f"'{TAGS_HEADER}: " + ",".join(f"{t}=..." for t in absent) + "'"
            )

    # 4
    def route(self, ctx: RequestContext) -> None:
        req, rec, ep, body, policy, key = ctx.req, ctx.rec, ctx.ep, ctx.body, ctx.policy, ctx.key
        assert policy is not None and key is not None
        requested = ep.dialect.requested_model(req.path, body)  # Gemini names it in the URL, others in the body
        if not requested:
            raise bad_request("the request body must name a model, e.g. {\"model\": \"...\"}")
        ctx.stream = rec.stream = ep.dialect.wants_stream(req.path, body)
        rec.requested_model = requested
        if self._loops is not None:
            self._loops.admit(policy, key, requested, body)
        ctx.plan = plan = plan_for(policy, key, requested, req.headers, rec.tags, body, len(req.body))
        ctx.constraint = policy.routing.constraints.get(key.team_id)
        rec.route_rule = plan.rule_id
        named = policy.routes.get(requested)
        rec.alias = named.alias if named is not None else ""
        record_model(rec, plan.targets[0].deployments[0].model)  # the first choice (budgets reserve for it)

    # 5
    async def admit(self, ctx: RequestContext) -> None:
        """Budgets and rate limits (dataplane/budget/): reserve the worst case or refuse."""
        policy, key, plan, rec, ep = ctx.policy, ctx.key, ctx.plan, ctx.rec, ctx.ep
        assert self._budgets is not None and policy is not None and key is not None and plan is not None
        first = plan.targets[0].deployments[0].model
        rec.budget = await self._budgets.admit(
            policy.budgets, key.id, rec.tags, rec.requested_model, Route(first, rec.alias), ctx.req.body, ctx.body,
            ep.dialect.max_output_tokens(ctx.body), ep.dialect, ep.operation,
            [d.model for t in plan.targets for d in t.deployments])
        if rec.budget is not None:  # the provider may not produce more output than was reserved
            bound_output(ep.operation, ctx.body, ep.dialect.max_output_tokens(ctx.body), rec.budget.output_tokens)
