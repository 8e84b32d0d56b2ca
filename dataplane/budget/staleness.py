"""How long this node has gone without hearing from the control plane (snapshot stream or lease Sync).

A node cut off from the control plane cannot learn that a key was revoked or a budget paused. The policy's
`staleness.max_staleness_s` bounds how long it keeps serving budgeted keys on its last-known-good snapshot;
the budget gate asks `age_s()` on each budgeted request (two reads and a clock call).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence


class ControlPlaneContact:
    def __init__(self, sources: Sequence[Callable[[], float | None]],
                 clock: Callable[[], float] = time.monotonic) -> None:
        """`sources`: each returns the `clock()` time of its last message from the control plane, or None."""
        self._sources = tuple(sources)
        self._clock = clock
        self._boot = clock()  # before any contact, staleness counts from boot

    def age_s(self) -> float:
        last = self._boot
        for source in self._sources:
            t = source()
            if t is not None and t > last:
                last = t
        return self._clock() - last
