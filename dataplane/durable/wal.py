"""The usage write-ahead log: a Spool appended on the event-loop thread, shipped and synced from others.

Same directory layout, record format, lock and torn-tail recovery as dataplane.durable.spool
(it is a Spool subclass). What differs is who does what:

* the *appender* (one thread: the event loop) calls write(record): one plain
  os.write into the page cache, no fsync, no lock. A record is in the segment
  file when write() returns, so it survives a SIGKILL of the process. The
  appender alone rotates segments (a new file every `segment_bytes`).
* the *reader* (one other thread) calls read_from() and ack(): it reads through
  its own fds, up to the sizes the appender published, and deletes segments
  wholly before the acked cursor (never the active one).
* the *syncer* (one other thread, or the reader) calls sync() every ~100 ms:
  fsyncs the active and the retired segments, the directory after a rotation,
  and the cursor file ack() wrote. Only a machine crash (power, kernel) can lose
  what was written since the last sync: that window is the sync interval.

No lock is shared: each field has one writing thread, and the shared dict of
segment sizes is only touched by single operations (get, set, pop, copy) that
are atomic under the GIL. After a machine crash the cursor may lag the acked one (a
restart resends a little: delivery is at least once) but never leads the data.
`max_bytes` bounds the bytes on disk; write() refuses a record that does not
fit (the caller counts the drop) instead of blocking.
"""

from __future__ import annotations

import contextlib
import logging
import os
import zlib
from collections.abc import Sequence
from pathlib import Path

from dataplane.durable.fsync import fsync_dir
from dataplane.durable.spool import HEADER, Cursor, Spool, normalize

log = logging.getLogger(__name__)

__all__ = ["Cursor", "Wal"]


class Wal(Spool):
    def __init__(
        self, directory: Path, *, max_bytes: int, segment_bytes: int = 8 << 20, max_record_bytes: int = 1 << 20
    ) -> None:
        super().__init__(directory, max_bytes=max_bytes, segment_bytes=segment_bytes, max_record_bytes=max_record_bytes)
        self._active = max(self._sizes)  # appender-owned, like _fd and _appended
        self._appended = sum(self._sizes.values())  # bytes ever in segments still present at open, plus written
        self._freed = 0  # reader-owned: bytes of deleted segments
        self._retired: list[int] = []  # fds of rotated-out segments, fsync'd and closed by sync()
        self._dir_dirty = False
        self._synced_cursor = self._cursor
        self.write_errors = 0

    # ---- appender (event-loop thread) ---------------------------------------

    @property
    def size_bytes(self) -> int:
        return self._appended - self._freed

    @property
    def end(self) -> Cursor:
        return Cursor(self._active, self._sizes[self._active])

    def write(self, record: bytes) -> bool:
        """Append one record (visible to readers and crash-safe against a process kill on return); False if it
        does not fit (`max_bytes`, `max_record_bytes`), the WAL is closed, or the disk failed (counted)."""
        need = HEADER.size + len(record)
        if self._fd < 0 or len(record) > self.max_record_bytes or self._appended - self._freed + need > self.max_bytes:
            return False
        seg = self._active
        size = self._sizes[seg]
        try:
            if size > 0 and size + need > self.segment_bytes:
                self._roll()
                seg, size = self._active, 0
            view = memoryview(HEADER.pack(len(record), zlib.crc32(record)) + record)
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError:
            self.write_errors += 1
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, size)  # no partial record left for a later append to follow
            return False
        self._sizes[seg] = size + need
        self._appended += need
        return True

    def append(self, records: Sequence[bytes]) -> int:
        """Spool.append's contract (the accepted prefix), without the fsync: see sync()."""
        for i, rec in enumerate(records):
            if not self.write(rec):
                return i
        return len(records)

    def _roll(self) -> None:
        seg = self._active + 1
        fd = os.open(self._path(seg), os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o600)
        self._retired.append(self._fd)
        self._fd = fd
        self._sizes[seg] = 0
        self._active = seg
        self._dir_dirty = True

    # ---- reader -------------------------------------------------------------

    def _sizes_view(self) -> dict[int, int]:
        # dict.copy() is one atomic step under the GIL while the event-loop thread appends and rolls
        return dict(sorted(self._sizes.copy().items()))

    def _skip_corrupt(self, c: Cursor, sizes: dict[int, int]) -> Cursor:
        # Unlike Spool, never roll here: only the event-loop thread writes segments.
        log.error("wal %s: corrupt record at offset %d; skipping the rest", self._path(c.segment), c.offset)
        self.corrupt_segments += 1
        return Cursor(c.segment + 1, 0) if c.segment + 1 in sizes else Cursor(c.segment, sizes[c.segment])

    def ack(self, cursor: Cursor) -> None:
        """Everything before `cursor` is delivered: record it (page cache, so a process kill keeps it; fsync'd
        by sync()), then delete the segments wholly before it."""
        c = normalize(cursor, self._read_sizes(None))
        if c == self._cursor:
            return
        tmp = self.dir / "cursor.tmp"
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write(f"{c.segment} {c.offset}\n")
        os.replace(tmp, self.dir / "cursor")
        self._cursor = c
        for seg in sorted(s for s in self._sizes.copy() if s < c.segment):
            size = self._sizes.pop(seg)
            self._path(seg).unlink(missing_ok=True)
            self._freed += size

    # ---- syncer -------------------------------------------------------------

    def sync(self) -> None:
        """Make every record written so far, and the acked cursor, survive a machine crash."""
        while self._retired:
            fd = self._retired.pop(0)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fd = self._fd
        if fd >= 0:
            os.fsync(fd)
        if self._dir_dirty:
            self._dir_dirty = False
            fsync_dir(self.dir)
        c = self._cursor
        if c != self._synced_cursor:  # ack() wrote the file before setting _cursor
            fd = os.open(self.dir / "cursor", os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            fsync_dir(self.dir)
            self._synced_cursor = c

    def close(self) -> None:
        """Sync, then close; call it once the other threads are done with the WAL."""
        if self._fd < 0:
            return
        try:
            self.sync()
        except OSError as exc:
            log.error("wal %s: final sync failed: %s", self.dir, exc)
        for fd in self._retired:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._retired.clear()
        super().close()
