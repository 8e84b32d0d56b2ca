"""The guardrail stages of the request pipeline: input (before routing) and output (on the context's writer).

Outcomes go on the request record (-> usage event guardrail_outcome) and the node's counters: guardrail id,
rule ids, action, counts; never the matched text.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from dataplane.dialects.base import ErrorKind
from dataplane.dialects.client_errors import GatewayError
from dataplane.guardrails.compiled import INPUT, OUTPUT, CompiledGuardrail
from dataplane.guardrails.engine import SLOW_ENGINE_WARNING, Finding, linear_engine
from dataplane.guardrails.metrics import GuardrailCounters
from dataplane.guardrails.refusal import blocked
from dataplane.guardrails.scancache import scan_index
from dataplane.guardrails.walk import TextIndex

if TYPE_CHECKING:
    from dataplane.pipeline.context import RequestContext
    from dataplane.usage.event import RequestRecord

_DIR_NAME = {INPUT: "input", OUTPUT: "output"}


def _failed(g: CompiledGuardrail, exc: Exception) -> GatewayError:
    return GatewayError(503, ErrorKind.UNAVAILABLE,
                        f"guardrail {g.id!r} could not check this request ({type(exc).__name__}) and is set to "
                        "fail closed; retry, or ask your platform team")


class Guardrails:
    """Implements dataplane.pipeline.stages.GuardrailStage."""

    def __init__(self, counters: GuardrailCounters | None = None, *, scan_budget_s: float = 0.25,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.counters = counters or GuardrailCounters(fallback_engine=not linear_engine())
        self.scan_budget_s = scan_budget_s  # per guardrail per scan; past it the fail mode applies (ScanTimeout)
        self.clock = clock

    def startup_warning(self) -> str | None:
        """What the node logs at start when guardrails would scan with the slow fallback engine."""
        return SLOW_ENGINE_WARNING if self.counters.fallback_engine else None

    # -- stage 3: input
    def check_input(self, ctx: RequestContext) -> None:
        policy = ctx.policy
        if policy is None or ctx.key is None:
            return
        gset = policy.guardrails
        if gset.universal_input:  # precomputed per snapshot: the guardrails every request gets (the default)
            gs = gset.universal_input
        elif gset.inputs:
            requested = ctx.ep.dialect.requested_model(ctx.req.path, ctx.body) or ""
            gs = gset.applicable(ctx.key, requested, "", INPUT)
        else:
            return  # no input guardrail in this snapshot, or only ones attached to routing rules
        if gset.sampled:
            gs = tuple(g for g in gs if g.sampled(ctx.rec.event_id))
        if gs:
            self._input(ctx, gs)

    def check_routed_input(self, ctx: RequestContext) -> None:
        """Guardrails attached only to a routing rule run once the rule is known (right after the route plan)."""
        policy, key, plan = ctx.policy, ctx.key, ctx.plan
        if policy is None or key is None or plan is None or not policy.guardrails.by_rule or not plan.rule_id:
            return
        requested = ctx.rec.requested_model
        before = set(policy.guardrails.applicable(key, requested, "", INPUT))
        gs = tuple(g for g in policy.guardrails.applicable(key, requested, plan.rule_id, INPUT)
                   if g not in before and g.sampled(ctx.rec.event_id))
        if gs:
            self._input(ctx, gs)

    def _input(self, ctx: RequestContext, gs: tuple[CompiledGuardrail, ...]) -> None:
        # One walk: every string of the body joined, so each guardrail is one RE2 pass over the strings it has
        # not seen before (scancache: a conversation resent every turn is scanned once); no candidate (the
        # common case) means nothing to validate, record or re-serialise.
        index = TextIndex(ctx.body)
        changed = False
        for g in gs:
            cache = g.cache
            seen = (cache.hits, cache.misses) if cache is not None else (0, 0)
            try:
                findings = scan_index(g.scanner, cache, index, self.clock() + self.scan_budget_s, self.clock)
            except Exception as exc:  # a detector failure: the guardrail's fail mode decides
                self.record(ctx.rec, g, INPUT, "error", Counter(), exc)
                if not g.fail_open:
                    raise _failed(g, exc) from exc
                continue
            finally:
                if cache is not None and (cache.hits != seen[0] or cache.misses != seen[1]):  # 8 KB+ bodies only
                    self.counters.cache["hit"] += cache.hits - seen[0]
                    self.counters.cache["miss"] += cache.misses - seen[1]
            if not findings:
                continue
            rules = Counter(f.rule for f in findings)
            action = self.record(ctx.rec, g, INPUT, g.action, rules)
            if action == "block":
                raise blocked(g, rules, "request")
            if action == "redact":
                index.apply(findings)
                index = TextIndex(ctx.body)  # the next guardrail sees the redacted text
                changed = True
        if changed:  # what the provider receives (and what a retry or fallback re-parses)
            ctx.req.body = orjson.dumps(ctx.body)

    # -- stage 7: output (installed on the context before the attempts)
    def attach_output(self, ctx: RequestContext) -> None:
        policy, key = ctx.policy, ctx.key
        if policy is None or key is None or not policy.guardrails.outputs:
            return
        rule = ctx.plan.rule_id if ctx.plan is not None else ""
        gs = [g for g in policy.guardrails.applicable(key, ctx.rec.requested_model, rule, OUTPUT)
              if g.sampled(ctx.rec.event_id)]
        if gs:
            from dataplane.pipeline.output_guard import OutputGuard  # only requests with output guardrails pay for it

            ctx.output = OutputGuard(self, gs)

    def record(self, rec: RequestRecord, g: CompiledGuardrail, direction: int, action: str,
               rules: Counter[str], error: Exception | None = None) -> str:
        """Record an outcome; returns the action actually taken (audit_only turns block/redact into audit)."""
        taken = "audit" if g.audit_only and action in ("block", "redact") else action
        entry: dict[str, Any] = {"id": g.id, "direction": _DIR_NAME[direction], "action": taken,
                                 "rules": dict(sorted(rules.items())), "count": sum(rules.values())}
        if taken != action:
            entry["would"] = action
        if error is not None:  # which failure, and what the fail mode did with the request
            entry["error"] = type(error).__name__
            entry["fail"] = "open" if g.fail_open else "closed"
        rec.guardrails.append(entry)
        self.counters.count(g.id, _DIR_NAME[direction], taken, rules)
        return taken

    def scan_output(self, ctx: RequestContext, g: CompiledGuardrail, text: str) -> list[Finding]:
        """One guardrail over output text; a detector failure follows the guardrail's fail mode."""
        try:
            return g.scanner.scan(text, self.clock() + self.scan_budget_s, self.clock)
        except Exception as exc:
            self.record(ctx.rec, g, OUTPUT, "error", Counter(), exc)
            if not g.fail_open:
                raise _failed(g, exc) from exc
            return []
