"""Coalesce a node's accepted-delta acks (issue 16): at most one per interval, the latest one.

Under a stream of mints the control plane publishes a delta every ~250 ms to every node, and each ack is a gRPC
message its Python layer must receive and record: at 100 nodes that was half of the fan-out's CPU per mint. The
control plane records node status at most once a second anyway, and it computes each node's next delta from what
it *sent*, not from what was acked, so a later accepted ack stands for every earlier one.

Leading and trailing edge: the first accepted ack after a quiet interval goes at once (a single policy edit is
acknowledged as fast as before), later ones within the interval are held and only the newest is sent when the
interval ends. A rejection, and any snapshot ack, goes at once, after the held accepted ack (so the control plane
sees them in order): a rejected delta makes the control plane resend everything, that must not wait.

Quiet flush (`quiet_s`): the held ack also goes once no newer delta has come for `quiet_s`, so after a run of edits
ends the node's recorded status catches up within `quiet_s` (`interlock status` shows it in sync), while under a
steady stream (deltas closer than `quiet_s`, e.g. one per 0.6 s publish window) acks stay at one per interval.
"""

from __future__ import annotations

import math

from interlock_contracts.v1 import control_pb2


class AckPacer:
    def __init__(self, interval_s: float, quiet_s: float = math.inf):
        if interval_s < 0 or quiet_s <= 0:
            raise ValueError("ack interval must be >= 0 and quiet_s > 0")
        self._interval_s = interval_s
        self._quiet_s = quiet_s
        self._held: control_pb2.Ack | None = None
        self._held_at = -math.inf  # clock time the held ack was offered
        self._last_sent = -math.inf  # clock time of the last accepted ack sent
        self.coalesced = 0  # accepted acks replaced by a newer one before being sent (observable)

    def offer(self, ack: control_pb2.Ack, now: float, *, coalescible: bool) -> list[control_pb2.Ack]:
        """The acks to send now, in order. `coalescible`: an accepted delta ack (anything else goes at once)."""
        if coalescible and ack.accepted:
            if now - self._last_sent >= self._interval_s:
                self._held = None  # superseded: this one says more
                self._last_sent = now
                return [ack]
            if self._held is not None:
                self.coalesced += 1
            self._held = ack
            self._held_at = now
            return []
        out = self.due(math.inf)
        if ack.accepted:
            self._last_sent = now
        return [*out, ack]

    def deadline(self) -> float | None:
        """When the held ack must go (clock time), or None when nothing is held."""
        if self._held is None:
            return None
        return min(self._last_sent + self._interval_s, self._held_at + self._quiet_s)

    def due(self, now: float) -> list[control_pb2.Ack]:
        """The held ack if its time has come (now = inf: whatever is held)."""
        deadline = self.deadline()
        if deadline is None or now < deadline:
            return []
        held, self._held = self._held, None
        if now != math.inf:
            self._last_sent = now
        assert held is not None
        return [held]
