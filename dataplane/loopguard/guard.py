"""Per-key detection: N requests with the same signature within a window, spend velocity over a window.

State is per node and bounded (per key: one deque of recent signatures and one of recent spend). Keys whose
breaker tripped are paused here at once (before the control plane's pause reaches the snapshot) and the trip
is handed to `report` (dataplane/control_reporter.py). A local pause lasts until the snapshot shows the key
paused (from then the policy decides, and `interlock keys resume` lifts it) or `local_pause_s` passes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from dataplane.loopguard.index import Breaker

MAX_KEYS = 50_000  # tracked keys per node; the oldest state is dropped beyond this


@dataclass(frozen=True)
class Trip:
    key_id: str
    breaker: Breaker
    reason: str


class _KeyState:
    __slots__ = ("sigs", "spend", "spend_total")

    def __init__(self) -> None:
        self.sigs: deque[tuple[float, bytes]] = deque()
        self.spend: deque[tuple[float, int]] = deque()
        self.spend_total = 0


class LoopGuard:
    def __init__(self, *, clock: Callable[[], float], report: Callable[[Trip], None],
                 local_pause_s: float = 300.0) -> None:
        self._clock = clock
        self._report = report
        self._local_pause_s = local_pause_s
        self._keys: dict[str, _KeyState] = {}
        self.paused: dict[str, tuple[float, str]] = {}  # key id -> (until, reason): local pauses
        self.trips = 0

    def _state(self, key_id: str) -> _KeyState:
        st = self._keys.get(key_id)
        if st is None:
            if len(self._keys) >= MAX_KEYS:
                self._keys.pop(next(iter(self._keys)))
            st = self._keys[key_id] = _KeyState()
        return st

    def local_pause(self, key_id: str, snapshot_paused: bool) -> str:
        """Why this node refuses the key on its own ("" = it does not)."""
        p = self.paused.get(key_id)
        if p is None:
            return ""
        if snapshot_paused or self._clock() >= p[0]:
            del self.paused[key_id]  # the policy has it now (or the control plane never answered)
            return ""
        return p[1]

    def resumed(self, key_id: str) -> None:
        """The snapshot shows the key running again: forget what led to the pause."""
        self._keys.pop(key_id, None)

    def request(self, key_id: str, br: Breaker, sig: bytes | None) -> None:
        if not br.identical_requests or sig is None:
            return
        now = self._clock()
        sigs = self._state(key_id).sigs
        sigs.append((now, sig))
        horizon = now - br.identical_window_s
        while sigs and sigs[0][0] < horizon:
            sigs.popleft()
        if len(sigs) > 4 * br.identical_requests:  # bounded: only the recent ones can decide
            sigs.popleft()
        same = sum(1 for _, s in sigs if s == sig)
        if same >= br.identical_requests:
            sigs.clear()
            self._trip(key_id, br, f"{same} near-identical requests (same last step) within "
                                   f"{br.identical_window_s:g}s: the agent looks stuck repeating one step")

    def spent(self, key_id: str, br: Breaker, pico: int) -> None:
        if not br.max_pico_per_minute or pico <= 0:
            return
        now = self._clock()
        st = self._state(key_id)
        st.spend.append((now, pico))
        st.spend_total += pico
        horizon = now - br.velocity_window_s
        while st.spend and st.spend[0][0] < horizon:
            st.spend_total -= st.spend.popleft()[1]
        per_minute = st.spend_total * 60 / br.velocity_window_s
        if per_minute > br.max_pico_per_minute:
            st.spend.clear()
            st.spend_total = 0
            self._trip(key_id, br, f"spending ${per_minute / 1e12:.2f}/min over the last {br.velocity_window_s:g}s, "
                                   f"above the ${br.max_pico_per_minute / 1e12:.2f}/min limit")

    def _trip(self, key_id: str, br: Breaker, reason: str) -> None:
        self.trips += 1
        if br.action != "alert":
            self.paused[key_id] = (self._clock() + self._local_pause_s, reason)
        self._report(Trip(key_id, br, reason))
