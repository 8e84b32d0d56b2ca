"""Which loop breaker applies to a key: the snapshot's breakers indexed once (key, then team, then all)."""

from __future__ import annotations

from dataclasses import dataclass, field

from interlock_contracts.v1 import policy_pb2


@dataclass(frozen=True, slots=True)
class Breaker:
    id: str
    identical_requests: int  # 0 = off
    identical_window_s: float
    max_pico_per_minute: int  # 0 = off
    velocity_window_s: float
    action: str  # "alert" | "pause" | "revoke"


# Without a policy "all" breaker: an agent that sends the same tool step (same call, same result) 20 times in
# 10 minutes is paused. Only requests ending in a tool result count (dataplane/loopguard/signature.py).
DEFAULT = Breaker("default", 20, 600.0, 0, 60.0, "pause")
_UNSET = object()


@dataclass(frozen=True)
class LoopIndex:
    by_key: dict[str, Breaker | None] = field(default_factory=dict)  # None: breakers off for that key / team
    by_team: dict[str, Breaker | None] = field(default_factory=dict)
    everyone: Breaker | None = DEFAULT

    @property
    def empty(self) -> bool:
        return not self.by_key and not self.by_team and self.everyone is None

    def for_key(self, key_id: str, team_id: str) -> Breaker | None:
        b = self.by_key.get(key_id, _UNSET)
        if b is _UNSET:
            b = self.by_team.get(team_id, _UNSET)
        return self.everyone if b is _UNSET else b  # type: ignore[return-value]

    @classmethod
    def build(cls, snap: policy_pb2.PolicySnapshot) -> LoopIndex:
        """The snapshot's breakers; DEFAULT for everyone unless the policy declares an "all" breaker (one with
        both detectors at 0 turns the default off). A breaker with both detectors off disables its scope."""
        by_key: dict[str, Breaker | None] = {}
        by_team: dict[str, Breaker | None] = {}
        everyone: Breaker | None = DEFAULT
        for b in snap.loop_breakers:
            br = Breaker(b.id, b.identical_requests, float(b.identical_window_s or 600), b.max_pico_per_minute,
                         float(b.velocity_window_s or 60), b.action or "pause")
            on = br if br.identical_requests or br.max_pico_per_minute else None
            if b.scope == "key":
                by_key[b.scope_id] = on
            elif b.scope == "team":
                by_team[b.scope_id] = on
            else:
                everyone = on
        return cls(by_key, by_team, everyone)
