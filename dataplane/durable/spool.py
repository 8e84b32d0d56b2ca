"""A bounded, crash-safe, append-only local spool for serialized records (UsageEvent bytes).

Layout of the spool directory:

    LOCK                    flock'ed while open: one process per spool
    cursor                  "<segment> <offset>": everything before it is acked; replaced atomically
    00000000000000000007.seg  segments: records of [u32 length][u32 crc32(payload)][payload], big endian

append() writes a whole batch with one write per segment and one fsync, so an
accepted batch survives a crash or power loss. open recovers from a crash by
truncating the torn tail of the last segment (a short or CRC-failing record).
read_from(cursor) replays in append order; ack(cursor) persists the cursor and
deletes the segments wholly before it. `max_bytes` bounds the segment bytes on
disk: append() accepts the prefix of a batch that fits and `full` reports it.

Blocking file I/O, not thread-safe: call it from one thread at a time, never on
the event loop (KafkaUsageSink uses a single-thread executor).
"""

from __future__ import annotations

import fcntl
import logging
import os
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from dataplane.durable.fsync import fsync_dir

log = logging.getLogger(__name__)

HEADER = struct.Struct(">II")  # payload length, crc32(payload)
SUFFIX = ".seg"


def normalize(c: Cursor, sizes: dict[int, int]) -> Cursor:
    """Skip past segment ends ((k, size of k) is (k+1, 0)) and deleted (so acked) segments."""
    if sizes and c.segment not in sizes and c.segment < (first := min(sizes)):
        c = Cursor(first, 0)
    while c.segment in sizes and c.offset >= sizes[c.segment] and c.segment + 1 in sizes:
        c = Cursor(c.segment + 1, 0)
    return c


class SpoolError(OSError):
    """The spool directory is unusable (locked by another process, unreadable cursor)."""


class Cursor(NamedTuple):
    """A position in the spool: byte `offset` into segment number `segment`."""

    segment: int
    offset: int


class Spool:
    def __init__(
        self, directory: Path, *, max_bytes: int, segment_bytes: int = 8 << 20, max_record_bytes: int = 1 << 20
    ) -> None:
        if min(max_bytes, segment_bytes, max_record_bytes) <= 0:
            raise ValueError("max_bytes, segment_bytes and max_record_bytes must be positive")
        self.dir = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.max_record_bytes = max_record_bytes
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock_fd = os.open(self.dir / "LOCK", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._lock_fd)
            raise SpoolError(f"spool {self.dir} is in use by another process") from exc
        self._sizes: dict[int, int] = {}  # segment number -> bytes, ascending
        self._fd = -1  # the active (last) segment, open for append
        self.truncated_bytes = 0  # torn tail dropped by recovery
        self.corrupt_segments = 0  # segments skipped by read_from because of a bad record
        self._cursor = self._recover()

    # ---- open / recovery -------------------------------------------------

    def _path(self, seg: int) -> Path:
        return self.dir / f"{seg:020d}{SUFFIX}"

    def _load_cursor(self) -> Cursor:
        try:
            raw = (self.dir / "cursor").read_text()
        except FileNotFoundError:
            return Cursor(0, 0)
        try:
            seg, off = (int(x) for x in raw.split())
        except ValueError as exc:
            raise SpoolError(f"spool cursor {self.dir / 'cursor'} is unreadable: {raw!r}") from exc
        return Cursor(seg, off)

    def _recover(self) -> Cursor:
        cursor = self._load_cursor()
        for p in sorted(self.dir.glob("*" + SUFFIX)):
            seg = int(p.stem)
            if seg < cursor.segment:  # acked; a crash hit between writing the cursor and deleting it
                p.unlink()
            else:
                self._sizes[seg] = p.stat().st_size
        if not self._sizes:
            self._sizes[cursor.segment] = 0
            self._path(cursor.segment).touch(mode=0o600)
            fsync_dir(self.dir)
        last = max(self._sizes)
        self._sizes[last] = self._valid_length(last)
        self._fd = os.open(self._path(last), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        first = min(self._sizes)
        if cursor.segment < first:
            cursor = Cursor(first, 0)
        return Cursor(cursor.segment, min(cursor.offset, self._sizes[cursor.segment]))

    def _valid_length(self, seg: int) -> int:
        """Length of the intact record prefix of `seg`; a torn tail is truncated away (and fsync'd)."""
        path = self._path(seg)
        data = path.read_bytes()
        pos = 0
        while (rec := self._parse(data, pos)) is not None:
            pos = rec[1]
        if pos < len(data):
            log.warning("spool %s: truncating a torn tail of %d bytes at offset %d", path, len(data) - pos, pos)
            self.truncated_bytes += len(data) - pos
            with open(path, "r+b") as f:
                f.truncate(pos)
                os.fsync(f.fileno())
        return pos

    def _parse(self, data: bytes, pos: int) -> tuple[bytes, int] | None:
        """The record at `pos` and the offset after it, or None if it is short or corrupt."""
        end = pos + HEADER.size
        if end > len(data):
            return None
        length, crc = HEADER.unpack_from(data, pos)
        if length > self.max_record_bytes or end + length > len(data):
            return None
        payload = data[end : end + length]
        if zlib.crc32(payload) != crc:
            return None
        return payload, end + length

    # ---- state -------------------------------------------------------------

    @property
    def cursor(self) -> Cursor:
        """Where replay resumes: every record before it was acked."""
        return self._cursor

    @property
    def end(self) -> Cursor:
        last = max(self._sizes)
        return Cursor(last, self._sizes[last])

    @property
    def size_bytes(self) -> int:
        return sum(self._sizes.values())

    @property
    def full(self) -> bool:
        return self.size_bytes + HEADER.size >= self.max_bytes

    @property
    def empty(self) -> bool:
        """No record after the acked cursor."""
        return self._normalize(self._cursor) == self.end

    def _normalize(self, c: Cursor) -> Cursor:
        return normalize(c, self._sizes)

    def _sizes_view(self) -> dict[int, int]:
        """A copy of the segment sizes for one read (Wal overrides it: another thread appends)."""
        return dict(self._sizes)

    def _read_sizes(self, limit: Cursor | None) -> dict[int, int]:
        """The segment sizes a read may see, cut at `limit`."""
        sizes = self._sizes_view()
        if limit is not None:
            sizes = {s: n for s, n in sizes.items() if s < limit.segment}
            sizes[limit.segment] = limit.offset
        return sizes

    # ---- operations ----------------------------------------------------------

    def append(self, records: Sequence[bytes]) -> int:
        """Durably append the longest prefix of `records` that fits in max_bytes; return how many.

        Records longer than max_record_bytes are never accepted (they end the prefix too).
        """
        size = self.size_bytes
        chunks: list[bytes] = []
        accepted = 0
        for rec in records:
            need = HEADER.size + len(rec)
            if len(rec) > self.max_record_bytes or size + need > self.max_bytes:
                break
            last = max(self._sizes)
            if self._sizes[last] > 0 and self._sizes[last] + need > self.segment_bytes:
                self._write(chunks)
                chunks = []
                self._roll()
            chunks.append(HEADER.pack(len(rec), zlib.crc32(rec)))
            chunks.append(rec)
            self._sizes[max(self._sizes)] += need
            size += need
            accepted += 1
        self._write(chunks)
        return accepted

    def _write(self, chunks: list[bytes]) -> None:
        if not chunks:
            return
        data = b"".join(chunks)
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        os.fsync(self._fd)

    def _roll(self) -> None:
        """Close the active segment (already fsync'd) and start the next one."""
        os.close(self._fd)
        seg = max(self._sizes) + 1
        self._fd = os.open(self._path(seg), os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o600)
        self._sizes[seg] = 0
        fsync_dir(self.dir)

    def read_from(
        self, cursor: Cursor, *, max_records: int = 1000, max_bytes: int = 4 << 20, limit: Cursor | None = None
    ) -> tuple[list[bytes], Cursor]:
        """Up to `max_records` records (at least one, if any) from `cursor` on, and the cursor after them;
        with `limit`, none at or after it."""
        sizes = self._read_sizes(limit)
        out: list[bytes] = []
        taken = 0
        c = normalize(cursor, sizes)
        while len(out) < max_records and c.segment in sizes:
            size = sizes[c.segment]
            if c.offset >= size:
                break  # the end of the active segment
            with open(self._path(c.segment), "rb") as f:
                f.seek(c.offset)
                data = f.read(min(size - c.offset, max(max_bytes - taken, HEADER.size + self.max_record_bytes)))
            pos = 0
            while len(out) < max_records and (rec := self._parse(data, pos)) is not None:
                if out and taken + len(rec[0]) > max_bytes:
                    return out, Cursor(c.segment, c.offset + pos)
                out.append(rec[0])
                taken += len(rec[0])
                pos = rec[1]
            if pos == 0 and not out:  # the window always holds a whole valid record: this one is bad
                c = self._skip_corrupt(c, sizes)
                continue
            c = normalize(Cursor(c.segment, c.offset + pos), sizes)
            if taken >= max_bytes or pos == 0:
                break
        return out, c

    def _skip_corrupt(self, c: Cursor, sizes: dict[int, int]) -> Cursor:
        """A record that fails its CRC inside the spool (not a torn tail): lose the rest of that segment."""
        log.error(
            "spool %s: corrupt record at offset %d; skipping the rest of the segment", self._path(c.segment), c.offset
        )
        self.corrupt_segments += 1
        if c.segment == max(self._sizes):
            self._roll()
        return Cursor(c.segment + 1, 0)

    def ack(self, cursor: Cursor) -> None:
        """Everything before `cursor` is delivered: persist it (atomically) and delete fully acked segments."""
        c = self._normalize(cursor)
        if c == self._cursor:
            return
        tmp = self.dir / "cursor.tmp"
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write(f"{c.segment} {c.offset}\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.dir / "cursor")
        fsync_dir(self.dir)
        self._cursor = c
        for seg in [s for s in self._sizes if s < c.segment]:
            self._path(seg).unlink(missing_ok=True)
            del self._sizes[seg]

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1
