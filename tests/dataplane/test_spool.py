"""dataplane.durable.spool: durable, ordered, bounded; recovers from a torn tail; acked segments are deleted."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dataplane.durable.spool import HEADER, Cursor, Spool, SpoolError


def recs(n: int, start: int = 0, size: int = 20) -> list[bytes]:
    return [f"rec-{i:08d}".encode().ljust(size, b".") for i in range(start, start + n)]


def read_all(spool: Spool, cursor: Cursor | None = None, batch: int = 7) -> tuple[list[bytes], Cursor]:
    out: list[bytes] = []
    c = spool.cursor if cursor is None else cursor
    while True:
        got, c = spool.read_from(c, max_records=batch)
        if not got:
            return out, c
        out.extend(got)


def segments(d: Path) -> list[Path]:
    return sorted(d.glob("*.seg"))


def test_append_read_in_order_across_segments_and_restart(tmp_path: Path) -> None:
    s = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=256)
    assert s.empty
    for i in range(0, 100, 10):
        assert s.append(recs(10, i)) == 10
    assert len(segments(tmp_path)) > 5
    got, end = read_all(s)
    assert got == recs(100) and end == s.end and not s.empty
    s.close()
    s2 = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=256)  # a restart replays the same, in order
    assert read_all(s2)[0] == recs(100)
    s2.close()


def test_ack_persists_and_deletes_fully_acked_segments(tmp_path: Path) -> None:
    s = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=256)
    s.append(recs(50))
    n_before = len(segments(tmp_path))
    first, c = s.read_from(s.cursor, max_records=30)
    s.ack(c)
    assert len(segments(tmp_path)) < n_before
    assert s.size_bytes == sum(p.stat().st_size for p in segments(tmp_path))
    s.close()
    s = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=256)
    assert s.cursor == c
    rest, end = read_all(s)
    assert first + rest == recs(50)
    s.ack(end)
    assert s.empty
    s.append(recs(1, 50))  # a fully acked spool keeps working
    assert read_all(s)[0] == recs(1, 50)
    s.close()


def test_torn_tail_is_truncated_on_open(tmp_path: Path) -> None:
    s = Spool(tmp_path, max_bytes=1 << 20)
    s.append(recs(5))
    s.close()
    seg = segments(tmp_path)[-1]
    good = seg.stat().st_size
    with open(seg, "ab") as f:  # a crash mid-write: header + half a payload
        f.write(HEADER.pack(20, 0) + b"half")
    s = Spool(tmp_path, max_bytes=1 << 20)
    assert s.truncated_bytes == HEADER.size + 4 and seg.stat().st_size == good
    assert read_all(s)[0] == recs(5)
    s.append(recs(2, 5))  # appends continue after the truncation point
    assert read_all(s)[0] == recs(7)
    s.close()


def test_crc_mismatch_in_tail_is_truncated(tmp_path: Path) -> None:
    s = Spool(tmp_path, max_bytes=1 << 20)
    s.append(recs(3))
    s.close()
    seg = segments(tmp_path)[-1]
    data = bytearray(seg.read_bytes())
    data[-1] ^= 0xFF  # last record's payload flipped: its CRC fails
    seg.write_bytes(bytes(data))
    s = Spool(tmp_path, max_bytes=1 << 20)
    assert read_all(s)[0] == recs(2)
    s.close()


def test_corrupt_record_in_an_old_segment_skips_that_segment(tmp_path: Path) -> None:
    s = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=100)
    s.append(recs(10))
    s.close()
    first = segments(tmp_path)[0]
    data = bytearray(first.read_bytes())
    data[HEADER.size] ^= 0xFF
    first.write_bytes(bytes(data))
    s = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=100)
    got, _ = read_all(s)
    assert s.corrupt_segments == 1 and got == recs(10)[len(recs(10)) - len(got) :] and len(got) < 10
    s.close()


def test_max_bytes_accepts_prefix_then_full_until_acked(tmp_path: Path) -> None:
    rec_size = HEADER.size + 20
    s = Spool(tmp_path, max_bytes=10 * rec_size, segment_bytes=4 * rec_size)
    assert s.append(recs(7)) == 7
    assert s.append(recs(7, 7)) == 3  # the prefix that fits
    assert s.full and s.append(recs(1, 14)) == 0
    got, c = s.read_from(s.cursor, max_records=8)
    assert got == recs(8)
    s.ack(c)  # frees the two fully acked segments
    assert not s.full
    assert s.append(recs(4, 20)) == 4
    assert read_all(s)[0] == recs(10)[8:] + recs(4, 20)
    assert s.size_bytes <= s.max_bytes
    s.close()


def test_fsync_per_batch_not_per_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = Spool(tmp_path, max_bytes=1 << 20)
    calls: list[int] = []
    real = os.fsync

    def counting_fsync(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    s.append(recs(500))
    assert len(calls) == 1
    s.close()


def test_second_process_cannot_open_a_spool_in_use(tmp_path: Path) -> None:
    s = Spool(tmp_path, max_bytes=1 << 20)
    with pytest.raises(SpoolError):
        Spool(tmp_path, max_bytes=1 << 20)
    s.close()
    Spool(tmp_path, max_bytes=1 << 20).close()


def test_read_respects_max_bytes_and_oversized_records_are_refused(tmp_path: Path) -> None:
    s = Spool(tmp_path, max_bytes=1 << 20, max_record_bytes=100)
    assert s.append([b"x" * 101]) == 0
    s.append(recs(10, size=50))
    got, c = s.read_from(s.cursor, max_bytes=120)
    assert got == recs(2, size=50)
    assert s.read_from(c, max_records=100)[0] == recs(8, 2, size=50)
    s.close()
