"""The loop breaker's two calls from the request path: admit (refuse a paused key; look at the request's
signature) and settle (count its spend). Nothing to do, and no hashing, when no breaker applies to the key."""

from __future__ import annotations

from typing import Any, Protocol

from dataplane.dialects.base import ErrorKind
from dataplane.dialects.client_errors import GatewayError
from dataplane.loopguard.guard import LoopGuard
from dataplane.loopguard.index import LoopIndex
from dataplane.loopguard.signature import signature
from dataplane.policy_types import KeyEntry


class LoopPolicy(Protocol):
    """What the loop stage reads from a compiled policy (dataplane/snapshot/policy.py's CompiledPolicy is one)."""

    @property
    def loops(self) -> LoopIndex: ...


def paused_error(key_id: str, reason: str) -> GatewayError:
    return GatewayError(429, ErrorKind.RATE_LIMIT,
                        f"virtual key {key_id} is paused by the runaway-loop breaker: {reason}. Nothing more is sent "
                        f"upstream on this key until an operator checks the agent and runs "
                        f"`interlock keys resume {key_id}`")


class LoopStage:
    def __init__(self, guard: LoopGuard) -> None:
        self.guard = guard

    def admit(self, policy: LoopPolicy, key: KeyEntry, model: str, body: dict[str, Any]) -> None:
        if key.paused:
            self.guard.paused.pop(key.id, None)  # the policy has the pause now; resume lifts it everywhere
            raise paused_error(key.id, key.paused)
        guard = self.guard
        if guard.paused and (why := guard.local_pause(key.id, False)):
            raise paused_error(key.id, why)
        loops = policy.loops
        if loops.empty:
            return
        br = loops.for_key(key.id, key.team_id)
        if br is None or not br.identical_requests:
            return
        guard.request(key.id, br, signature(model, body))
        if br.action != "alert" and (why := guard.local_pause(key.id, False)):
            raise paused_error(key.id, why)

    def settle(self, policy: LoopPolicy | None, key: KeyEntry | None, cost_pico: int) -> None:
        if policy is None or key is None or not cost_pico or policy.loops.empty:
            return
        br = policy.loops.for_key(key.id, key.team_id)
        if br is not None:
            self.guard.spent(key.id, br, cost_pico)
