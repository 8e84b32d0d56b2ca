"""Loop breakers into the snapshot (policy_pb2.LoopBreaker); the data plane indexes them (dataplane/loopguard/)."""

from __future__ import annotations

from interlock_contracts.v1 import policy_pb2

from .budgets import usd_to_pico
from .model import PolicyDocument


def compile_loop_breakers(doc: PolicyDocument, s: policy_pb2.PolicySnapshot) -> None:
    for b in sorted(doc.loop_breakers, key=lambda b: b.id):
        s.loop_breakers.add(id=b.id, scope=b.scope, scope_id=b.scope_id, identical_requests=b.identical_requests,
                            identical_window_s=b.identical_window_s,
                            max_pico_per_minute=usd_to_pico(b.max_usd_per_minute),
                            velocity_window_s=b.velocity_window_s, action=b.action)
