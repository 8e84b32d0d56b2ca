"""Optimistic offline allowance used, per limit per window, kept on disk so it survives outages AND restarts.

The optimistic offline mode promises at most `optimistic_overshoot_usd` beyond the lease per node per window.
Without memory the allowance would come back with every outage (and every restart); this book records what was
drawn from it. Written only while offline and only when the allowance is drawn on (rare, small JSON, atomic
replace), read once at boot.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)
Key = tuple[int, str, str]  # (kind, limit id, window key)
MAX_ENTRIES = 10_000  # windows close; old entries are dropped oldest-first beyond this


class AllowanceBook:
    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._used: dict[Key, int] = {}
        if path is not None and path.exists():
            try:
                for kind, limit_id, window_key, used in json.loads(path.read_text()):
                    self._used[(int(kind), str(limit_id), str(window_key))] = int(used)
            except (OSError, ValueError, TypeError) as exc:
                # unreadable: start from nothing drawn rather than refuse to boot; the loss is one allowance
                log.warning("ignoring unreadable optimistic allowance book %s: %s", path, exc)

    def used(self, key: Key) -> int:
        return self._used.get(key, 0)

    def draw(self, key: Key, amount: int) -> None:
        self._used[key] = self._used.get(key, 0) + amount
        while len(self._used) > MAX_ENTRIES:
            del self._used[next(iter(self._used))]
        self._save()

    def _save(self) -> None:
        if self._path is None:
            return
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._path.with_suffix(".tmp")
            tmp.write_text(json.dumps([[*k, v] for k, v in self._used.items()]))
            os.replace(tmp, self._path)
        except OSError as exc:
            log.warning("could not persist the optimistic allowance book %s: %s", self._path, exc)
