"""The embedded usage sink is write-ahead (dataplane.usage.wal_sink): kill -9 of `interlock dev` loses no event.

Truth is what the clients received (the x-interlock-request-id of every 200) against the rows in chDB.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import clickhouse_connect
import httpx
import pytest

from dataplane.durable.wal import Wal
from dataplane.usage.sink import ClickHouseSink
from dataplane.usage.wal_sink import WalClickHouseSink
from ingest.clickhouse_writer import IngestError, open_clickhouse
from ingest.schema import DEFAULT_DATABASE
from interlock.dev.setup import FAKE_GPT
from interlock_contracts.v1 import usage_pb2
from tests.fixtures.cluster import free_port
from tests.ingest.test_usage_clickhouse import make_events, total_cost


@pytest.fixture(scope="module")
def dsn(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"chdb://{tmp_path_factory.mktemp('chdb')}"


def _counts(dsn: str, database: str) -> tuple[int, int]:
    with clickhouse_connect.get_client(dsn=dsn) as ch:
        row = ch.query(f"SELECT count(), uniqExact(event_id) FROM {database}.usage_events").result_rows[0]
    return int(row[0]), int(row[1])


async def _emit_all(sink: ClickHouseSink | WalClickHouseSink, events: list) -> None:
    """As a serving node would: batches of emits with the loop breathing in between (its cost is measured
    by benchmarks/usage_sink_emit.py)."""
    for i in range(0, len(events), 100):
        for ev in events[i : i + 100]:
            sink.emit(ev)
        await asyncio.sleep(0)


async def test_wal_sink_writes_every_event(dsn: str, tmp_path: Path) -> None:
    """Same 5000 events through the buffer-only sink (baseline) and the WAL sink; both land exactly once."""
    events = make_events(5000, seed=11)
    base_db, wal_db = "t_" + uuid.uuid4().hex[:12], "t_" + uuid.uuid4().hex[:12]
    base = ClickHouseSink.from_dsn(dsn, database=base_db, batch_size=500, flush_interval_ms=50)
    await base.start()
    await _emit_all(base, events)
    await base.close()
    sink = WalClickHouseSink.from_dsn(dsn, tmp_path / "wal", database=wal_db, batch_size=500, flush_interval_ms=50)
    await sink.start()
    await _emit_all(sink, events)
    await sink.close()
    assert (sink.emitted, sink.spooled, sink.written, sink.dropped, sink.replayed) == (5000, 5000, 5000, 0, 0)
    assert sink.spool_empty  # everything acked
    assert _counts(dsn, wal_db) == (5000, 5000)
    with clickhouse_connect.get_client(dsn=dsn) as ch:
        cost = ch.query(f"SELECT sum(cost_usd) FROM {wal_db}.usage_events").result_rows[0][0]
    assert cost == total_cost(events)
    assert _counts(dsn, base_db) == (5000, 5000)


async def test_replay_after_insert_without_ack_is_exactly_once(dsn: str, tmp_path: Path) -> None:
    """The crash window: a batch inserted into ClickHouse, the process killed before the WAL ack."""
    database = "t_" + uuid.uuid4().hex[:12]
    events = make_events(40, seed=3)
    wal = Wal(tmp_path / "wal", max_bytes=1 << 20)
    for ev in events:
        assert wal.write(ev.SerializeToString())
    wal.close()
    with open_clickhouse(dsn, database=database) as writer:
        assert writer.insert_events(events[:25]) == 25  # landed, never acked
    sink = WalClickHouseSink.from_dsn(dsn, tmp_path / "wal", database=database, batch_size=10, flush_interval_ms=20)
    await sink.start()
    await sink.close()
    assert (sink.written, sink.replayed, sink.dropped) == (15, 15, 0)
    assert _counts(dsn, database) == (40, 40)


# ---- the real process ------------------------------------------------------------------------------------------


class Dev:
    """`interlock dev` as a child process on loopback ports."""

    def __init__(self, data_dir: Path, ports: dict[str, int], flush_ms: int) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")}
        env.update({f"INTERLOCK_{k}": str(v) for k, v in ports.items()})
        env["INTERLOCK_DEV_USAGE_FLUSH_MS"] = str(flush_ms)
        self.port = ports["DP_PORT"]
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from interlock.cli.main import main; main()", "dev", "--data-dir", str(data_dir)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        self.key = self._wait_banner(90)

    def _wait_banner(self, timeout_s: float) -> str:
        assert self.proc.stdout is not None
        deadline, seen = time.monotonic() + timeout_s, []
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            if m := re.search(r"export INTERLOCK_KEY=(\S+)", line):
                return m.group(1)
        self.proc.kill()
        raise AssertionError("interlock dev did not start:\n" + "".join(seen[-40:]))

    async def chat(self, http: httpx.AsyncClient, n: int, *, stream: bool = False) -> list[str]:
        """n requests; the event ids of those the client received in full (status 200, whole body)."""
        ids = []
        for i in range(n):
            body = {"model": FAKE_GPT, "messages": [{"role": "user", "content": f"hi {i}"}], "stream": stream}
            r = await http.post(f"http://127.0.0.1:{self.port}/v1/chat/completions", json=body,
                                headers={"Authorization": f"Bearer {self.key}"})  # fmt: skip
            if r.status_code == 200 and (not stream or "[DONE]" in r.text):
                ids.append(r.headers["x-interlock-request-id"])
        return ids


async def test_kill_9_of_interlock_dev_loses_no_usage_event(tmp_path: Path) -> None:
    data_dir = tmp_path / "dev"
    ports = {k: free_port() for k in ("DP_PORT", "ADMIN_PORT", "GRPC_PORT", "FAKE_PROVIDER_PORT")}
    dsn = f"chdb://{data_dir / 'clickhouse'}"
    # A minute between flushes: every event of the first run is only in the WAL when the process dies.
    dev = Dev(data_dir, ports, flush_ms=60_000)
    async with httpx.AsyncClient(timeout=20) as http:
        served = await dev.chat(http, 30) + await dev.chat(http, 10, stream=True)
    dev.proc.send_signal(signal.SIGKILL)
    dev.proc.wait(10)
    assert len(served) == 40
    assert _counts(dsn, DEFAULT_DATABASE) == (0, 0)  # nothing had been flushed: the WAL is the only copy

    dev = Dev(data_dir, ports, flush_ms=100)
    async with httpx.AsyncClient(timeout=20) as http:
        served += await dev.chat(http, 5)
    dev.proc.send_signal(signal.SIGINT)
    assert dev.proc.wait(60) == 0
    with clickhouse_connect.get_client(dsn=dsn) as ch:
        rows = ch.query(f"SELECT event_id FROM {DEFAULT_DATABASE}.usage_events").result_rows
    stored = [str(r[0]) for r in rows]
    assert len(stored) == len(set(stored)) == 45  # no duplicate
    assert set(stored) == set(served)  # no loss, nothing the clients did not receive


class _FlakyWriter:
    """Refuses the first `fail` inserts (as ClickHouse down would), then keeps what it is given."""

    def __init__(self, fail: int) -> None:
        self.fail, self.ids = fail, list[str]()

    def insert_wire(self, values: Sequence[bytes], *, dedup_token: str | None = None) -> int:
        if self.fail:
            self.fail -= 1
            raise IngestError("connection refused", retryable=True)
        self.ids += [usage_pb2.UsageEvent.FromString(v).event_id for v in values]
        return len(values)

    def insert_events(self, events: Sequence[usage_pb2.UsageEvent], *, dedup_token: str | None = None) -> int:
        self.ids += [e.event_id for e in events]
        return len(events)

    def close(self) -> None:
        pass


async def test_a_refused_batch_stays_in_the_wal_and_lands_later(tmp_path: Path) -> None:
    writer = _FlakyWriter(fail=3)
    sink = WalClickHouseSink(lambda: writer, tmp_path / "wal", stored=lambda w: lambda ids: set(),
                             batch_size=50, flush_interval_ms=10, retry_backoff_s=0.01)  # fmt: skip
    await sink.start()
    events = make_events(120, seed=9)
    for ev in events:
        sink.emit(ev)
    await sink.close()
    assert sink.failed_batches == 3 and sink.dropped == 0 and sink.written == 120
    assert sorted(writer.ids) == sorted(e.event_id for e in events)  # each once, none lost


async def test_close_leaves_what_cannot_be_written_in_the_wal(tmp_path: Path) -> None:
    """ClickHouse down at shutdown: close() gives up after close_timeout_s; the next start ships it."""
    down = _FlakyWriter(fail=10**9)
    sink = WalClickHouseSink(lambda: down, tmp_path / "wal", stored=lambda w: lambda ids: set(),
                             flush_interval_ms=10, retry_backoff_s=0.01, close_timeout_s=0.2)  # fmt: skip
    await sink.start()
    events = make_events(30, seed=4)
    for ev in events:
        sink.emit(ev)
    await sink.close()
    assert sink.written == 0 and sink.dropped == 0 and not sink.spool_empty
    up = _FlakyWriter(fail=0)
    again = WalClickHouseSink(lambda: up, tmp_path / "wal", stored=lambda w: lambda ids: set(), flush_interval_ms=10)
    await again.start()
    await again.close()
    assert (again.written, again.replayed) == (30, 30) and sorted(up.ids) == sorted(e.event_id for e in events)
