"""The client's error when a guardrail blocks a request or an answer (the input stage and the output guard
both raise it)."""

from __future__ import annotations

from collections import Counter

from dataplane.dialects.base import ErrorKind
from dataplane.dialects.client_errors import GatewayError
from dataplane.guardrails.compiled import CompiledGuardrail


def blocked(g: CompiledGuardrail, rules: Counter[str], where: str) -> GatewayError:
    names = ", ".join(sorted(rules))
    return GatewayError(400, ErrorKind.INVALID_REQUEST,
                        f"blocked by guardrail {g.id!r}: the {where} contains {sum(rules.values())} finding(s) of "
                        f"rule(s) {names}; remove them (the gateway never forwards them) or ask your platform team")
