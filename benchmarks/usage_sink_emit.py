"""emit() cost on the request hot path: the buffer-only chDB sink (baseline) against the write-ahead one.

    PYTHONPATH=$PWD python3 benchmarks/usage_sink_emit.py [--events 10000] [--rounds 3]

Both sinks flush to an embedded chDB in a temp dir while events are emitted (the flusher competes for the GIL,
as in a serving node); the WAL sink's figure includes serializing the event and one os.write. Also printed:
the WAL write alone, with no flusher running. Lower is better; the ratio is WAL / buffer-only.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from dataplane.durable.wal import Wal
from dataplane.usage.sink import ClickHouseSink
from dataplane.usage.wal_sink import WalClickHouseSink
from tests.ingest.test_usage_clickhouse import make_events


async def _timed(sink: ClickHouseSink | WalClickHouseSink, events: list) -> float:
    await sink.start()
    spent = 0.0
    for i in range(0, len(events), 100):
        t0 = time.perf_counter()
        for ev in events[i : i + 100]:
            sink.emit(ev)
        spent += time.perf_counter() - t0
        await asyncio.sleep(0)  # the loop breathes, as between requests
    await sink.close()
    assert sink.dropped == 0 and sink.written == len(events), (sink.dropped, sink.written)
    return spent / len(events) * 1e9


async def main(n: int, rounds: int) -> None:
    events = make_events(n, seed=1)
    base, wal, alone = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        dsn = f"chdb://{tmp}/ch"
        for r in range(rounds):  # alternated, so a burst of load from elsewhere hits both
            base.append(await _timed(ClickHouseSink.from_dsn(dsn, database=f"b{r}", batch_size=500,
                                                             flush_interval_ms=50), events))  # fmt: skip
            wal.append(await _timed(WalClickHouseSink.from_dsn(dsn, Path(tmp) / f"wal{r}", database=f"w{r}",
                                                               batch_size=500, flush_interval_ms=50), events))  # fmt: skip
            w = Wal(Path(tmp) / f"alone{r}", max_bytes=1 << 30)
            t0 = time.perf_counter()
            for ev in events:
                w.write(ev.SerializeToString())
            alone.append((time.perf_counter() - t0) / n * 1e9)
            w.close()
    b, w_, a = (statistics.median(x) for x in (base, wal, alone))
    print(f"events={n} rounds={rounds}, medians (shared machine: compare within this run only)")
    print(f"  buffer-only ClickHouseSink.emit   {b:8.0f} ns/event  (baseline, loses buffered events on kill -9)")
    print(f"  WalClickHouseSink.emit            {w_:8.0f} ns/event  ({w_ / b:.1f}x baseline)")
    print(f"  serialize + Wal.write, no flusher {a:8.0f} ns/event")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    asyncio.run(main(args.events, args.rounds))
