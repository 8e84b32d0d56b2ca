"""The guardrail stages of the request pipeline: input (before routing) and output (on the context's writer).

Outcomes go on the request record (-> usage event guardrail_outcome) and the node's counters: guardrail id,
rule ids, action, counts; never the matched text.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

import orjson

from dataplane.dialects.base import ErrorKind
from dataplane.gateway_errors import GatewayError
from dataplane.guardrails.compiled import INPUT, OUTPUT, CompiledGuardrail
from dataplane.guardrails.engine import Finding
from dataplane.guardrails.metrics import GuardrailCounters
from dataplane.guardrails.walk import TextIndex, raw_text

if TYPE_CHECKING:
    from dataplane.pipeline.context import RequestContext
    from dataplane.usage_event import RequestRecord

_DIR_NAME = {INPUT: "input", OUTPUT: "output"}


def blocked(g: CompiledGuardrail, rules: Counter[str], where: str) -> GatewayError:
    names = ", ".join(sorted(rules))
    return GatewayError(400, ErrorKind.INVALID_REQUEST,
                        f"blocked by guardrail {g.id!r}: the {where} contains {sum(rules.values())} finding(s) of "
                        f"rule(s) {names}; remove them (the gateway never forwards them) or ask your platform team")


def _failed(g: CompiledGuardrail, exc: Exception) -> GatewayError:
    return GatewayError(503, ErrorKind.UNAVAILABLE,
                        f"guardrail {g.id!r} could not check this request ({type(exc).__name__}) and is set to "
                        "fail closed; retry, or ask your platform team")


class Guardrails:
    """Implements dataplane.pipeline.stages.GuardrailStage."""

    def __init__(self, counters: GuardrailCounters | None = None) -> None:
        self.counters = counters or GuardrailCounters()

    # -- stage 3: input
    def check_input(self, ctx: RequestContext) -> None:
        policy = ctx.policy
        if policy is None or not policy.guardrails.guardrails or ctx.key is None:
            return
        requested = ctx.ep.dialect.requested_model(ctx.req.path, ctx.body) or ""
        gs = [g for g in policy.guardrails.applicable(ctx.key, requested, "", INPUT) if g.sampled(ctx.rec.event_id)]
        if gs:
            self._input(ctx, gs)

    def check_routed_input(self, ctx: RequestContext) -> None:
        """Guardrails attached only to a routing rule run once the rule is known (right after the route plan)."""
        policy, key, plan = ctx.policy, ctx.key, ctx.plan
        if policy is None or key is None or plan is None or not policy.guardrails.by_rule or not plan.rule_id:
            return
        requested = ctx.rec.requested_model
        before = set(policy.guardrails.applicable(key, requested, "", INPUT))
        gs = [g for g in policy.guardrails.applicable(key, requested, plan.rule_id, INPUT)
              if g not in before and g.sampled(ctx.rec.event_id)]
        if gs:
            self._input(ctx, gs)

    def _input(self, ctx: RequestContext, gs: list[CompiledGuardrail]) -> None:
        raw = raw_text(ctx.req.body)
        try:
            if not any(g.scanner.maybe(raw) for g in gs):
                return  # no candidate anywhere in the body (the common case): no walk, nothing to record
        except Exception:  # the full scan below applies each guardrail's fail mode
            pass
        index = TextIndex(ctx.body)
        changed = False
        for g in gs:
            try:
                findings = g.scanner.scan(index.text)
            except Exception as exc:  # a detector failure: the guardrail's fail mode decides
                self.record(ctx.rec, g, INPUT, "error", Counter())
                if not g.fail_open:
                    raise _failed(g, exc) from exc
                continue
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
            from dataplane.guardrails.stream import OutputGuard  # only requests with output guardrails pay for it

            ctx.output = OutputGuard(self, gs)

    def record(self, rec: RequestRecord, g: CompiledGuardrail, direction: int, action: str,
               rules: Counter[str]) -> str:
        """Record an outcome; returns the action actually taken (audit_only turns block/redact into audit)."""
        taken = "audit" if g.audit_only and action in ("block", "redact") else action
        entry: dict[str, Any] = {"id": g.id, "direction": _DIR_NAME[direction], "action": taken,
                                 "rules": dict(sorted(rules.items())), "count": sum(rules.values())}
        if taken != action:
            entry["would"] = action
        rec.guardrails.append(entry)
        self.counters.count(g.id, _DIR_NAME[direction], taken, rules)
        return taken

    def scan_output(self, ctx: RequestContext, g: CompiledGuardrail, text: str) -> list[Finding]:
        """One guardrail over output text; a detector failure follows the guardrail's fail mode."""
        try:
            return g.scanner.scan(text)
        except Exception as exc:
            self.record(ctx.rec, g, OUTPUT, "error", Counter())
            if not g.fail_open:
                raise _failed(g, exc) from exc
            return []
