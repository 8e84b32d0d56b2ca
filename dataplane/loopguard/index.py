"""Which loop breaker applies to a key: the snapshot's breakers indexed once (key, then team, then all)."""

from __future__ import annotations

from dataclasses import dataclass, field

from interlock.v1 import policy_pb2


@dataclass(frozen=True, slots=True)
class Breaker:
    id: str
    identical_requests: int  # 0 = off
    identical_window_s: float
    max_pico_per_minute: int  # 0 = off
    velocity_window_s: float
    action: str  # "alert" | "pause" | "revoke"


@dataclass(frozen=True)
class LoopIndex:
    by_key: dict[str, Breaker] = field(default_factory=dict)
    by_team: dict[str, Breaker] = field(default_factory=dict)
    everyone: Breaker | None = None

    @property
    def empty(self) -> bool:
        return not self.by_key and not self.by_team and self.everyone is None

    def for_key(self, key_id: str, team_id: str) -> Breaker | None:
        return self.by_key.get(key_id) or self.by_team.get(team_id) or self.everyone

    @classmethod
    def build(cls, snap: policy_pb2.PolicySnapshot) -> LoopIndex:
        by_key: dict[str, Breaker] = {}
        by_team: dict[str, Breaker] = {}
        everyone = None
        for b in snap.loop_breakers:
            br = Breaker(b.id, b.identical_requests, float(b.identical_window_s or 600), b.max_pico_per_minute,
                         float(b.velocity_window_s or 60), b.action or "pause")
            if not br.identical_requests and not br.max_pico_per_minute:
                continue
            if b.scope == "key":
                by_key[b.scope_id] = br
            elif b.scope == "team":
                by_team[b.scope_id] = br
            else:
                everyone = br
        return cls(by_key, by_team, everyone)
