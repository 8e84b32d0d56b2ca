"""dataplane.durable.wal: a write is in the file on return; ordered reads from another thread while appending;
rotation, ack deletion, full, torn-tail recovery and restart from the synced cursor."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from dataplane.durable.spool import HEADER, Cursor, SpoolError
from dataplane.durable.wal import Wal


def recs(n: int, start: int = 0, size: int = 20) -> list[bytes]:
    return [f"rec-{i:08d}".encode().ljust(size, b".") for i in range(start, start + n)]


def read_all(wal: Wal, cursor: Cursor | None = None, batch: int = 7) -> tuple[list[bytes], Cursor]:
    out: list[bytes] = []
    c = wal.cursor if cursor is None else cursor
    while True:
        got, c = wal.read_from(c, max_records=batch)
        if not got:
            return out, c
        out.extend(got)


def segments(d: Path) -> list[Path]:
    return sorted(d.glob("*.seg"))


def test_a_write_is_in_the_segment_file_when_it_returns(tmp_path: Path) -> None:
    wal = Wal(tmp_path, max_bytes=1 << 20)
    fd = os.open(segments(tmp_path)[0], os.O_RDONLY)  # another fd, as another process would see it
    try:
        for i, rec in enumerate(recs(5)):
            assert wal.write(rec)
            data = os.pread(fd, 1 << 16, 0)
            assert len(data) == (i + 1) * (HEADER.size + 20) and data.endswith(rec)
    finally:
        os.close(fd)
    wal.close()


def test_rotation_ack_deletes_and_restart_resumes_at_the_synced_cursor(tmp_path: Path) -> None:
    wal = Wal(tmp_path, max_bytes=1 << 20, segment_bytes=256)
    assert wal.append(recs(100)) == 100
    assert len(segments(tmp_path)) > 5
    got, end = read_all(wal)
    assert got == recs(100) and end == wal.end and not wal.empty
    before = len(segments(tmp_path))
    half, c = wal.read_from(wal.cursor, max_records=60)
    wal.ack(c)
    assert len(segments(tmp_path)) == before - 6 and wal.size_bytes == sum(p.stat().st_size for p in segments(tmp_path))
    wal.sync()
    wal.close()
    wal2 = Wal(tmp_path, max_bytes=1 << 20, segment_bytes=256)
    got2, _ = read_all(wal2)
    assert half == recs(60) and got2 == recs(40, 60)
    wal2.ack(wal2.end)
    assert wal2.empty and len(segments(tmp_path)) == 1
    wal2.close()


def test_full_refuses_and_acked_segments_free_space(tmp_path: Path) -> None:
    wal = Wal(tmp_path, max_bytes=1000, segment_bytes=200)
    accepted = wal.append(recs(100))
    assert 0 < accepted < 100 and wal.size_bytes <= 1000 and not wal.write(b"x" * 20)
    assert not wal.write(b"x" * (2 << 20))  # over max_record_bytes
    _, c = read_all(wal)
    wal.ack(c)
    assert wal.write(b"y" * 20)  # deleted segments made room
    wal.close()


def test_torn_tail_is_truncated_on_open(tmp_path: Path) -> None:
    wal = Wal(tmp_path, max_bytes=1 << 20)
    wal.append(recs(10))
    wal.close()
    seg = segments(tmp_path)[-1]
    with open(seg, "ab") as f:
        f.write(HEADER.pack(20, 123) + b"torn")  # a crash in the middle of a record
    wal2 = Wal(tmp_path, max_bytes=1 << 20)
    assert wal2.truncated_bytes == HEADER.size + 4
    assert wal2.write(b"after-the-crash")
    got, _ = read_all(wal2)
    assert got == [*recs(10), b"after-the-crash"]
    wal2.close()


def test_second_open_fails_while_locked(tmp_path: Path) -> None:
    wal = Wal(tmp_path, max_bytes=1 << 20)
    with pytest.raises(SpoolError):
        Wal(tmp_path, max_bytes=1 << 20)
    wal.close()


def test_reader_and_syncer_threads_while_the_appender_writes(tmp_path: Path) -> None:
    wal = Wal(tmp_path, max_bytes=64 << 20, segment_bytes=4096)
    n = 20_000
    done = threading.Event()
    got: list[bytes] = []

    def reader() -> None:
        c = wal.cursor
        while len(got) < n:
            batch, c = wal.read_from(c, max_records=500)
            got.extend(batch)
            wal.ack(c)

    def syncer() -> None:
        while not done.is_set():
            wal.sync()

    threads = [threading.Thread(target=reader), threading.Thread(target=syncer)]
    for t in threads:
        t.start()
    for rec in recs(n):
        assert wal.write(rec)
    threads[0].join(timeout=30)
    done.set()
    threads[1].join(timeout=30)
    assert got == recs(n) and wal.empty and len(segments(tmp_path)) <= 2
    wal.close()
    wal2 = Wal(tmp_path, max_bytes=1 << 20)
    assert wal2.empty  # the synced cursor says so after a restart
    wal2.close()
