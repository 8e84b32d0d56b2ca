"""The emit side both WAL-backed usage sinks share (usage_kafka.KafkaUsageSink, usage_wal_sink.WalClickHouseSink).

An event is durable once emit() returns: it is appended to the write-ahead log before anything else happens to
it. Before start() opens the WAL, events wait in a bounded in-memory list that start() writes out; after close()
they are dropped and counted. What carries the WAL's records onward (Kafka, ClickHouse) is each sink's own.
"""

from __future__ import annotations

import logging
from collections import deque

from dataplane.durable.wal import Cursor, Wal
from interlock_contracts.v1 import usage_pb2

log = logging.getLogger(__name__)


class WalFront:
    _wal: Wal | None
    _closed: bool
    _late_logged: bool
    _early: deque[usage_pb2.UsageEvent]  # emitted before start(): written to the WAL by it
    _max_early: int
    _overflow: int  # emit-side drops: before start() beyond _max_early, or after close()
    _lost: int  # the WAL refused the record (full or failing)
    emitted: int
    spooled: int

    @property
    def spool_bytes(self) -> int:
        return self._wal.size_bytes if self._wal is not None else 0

    def _spooled_one(self) -> None:
        """Called after each record reaches the WAL (the hot path: keep it cheap)."""

    def emit(self, event: usage_pb2.UsageEvent) -> None:
        self.emitted += 1
        wal = self._wal
        if wal is None or self._closed:
            if self._closed or len(self._early) >= self._max_early:
                self._overflow += 1
                if self._closed and not self._late_logged:
                    self._late_logged = True  # once: emit is on the hot path
                    log.error("usage event emitted after the sink closed: dropped, as will be every later one")
            else:
                self._early.append(event)
            return
        if wal.write(event.SerializeToString()):
            self.spooled += 1
            self._spooled_one()
        else:
            self._lost += 1

    def _adopt(self, wal: Wal) -> Cursor:
        """start(): the WAL is open; write out what was emitted before it. Returns where recovery ended."""
        self._wal = wal
        recovered = wal.end
        early, self._early = self._early, deque()
        self.emitted -= len(early)  # counted again by emit()
        for event in early:
            self.emit(event)
        return recovered
