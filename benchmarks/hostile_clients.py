#!/usr/bin/env python3
"""Hostile clients against one `interlock dataplane` node (issue 10's bar), figures with a same-run baseline.

    python benchmarks/hostile_clients.py [--idle 2000] [--slowloris 4] [--requests 500]

1. A normal keep-alive client (GET /v1/models, authenticated: parse, key lookup, response) alone: p50/p99.
2. The same while --idle idle connections and --slowloris sockets (one header line every 100 ms) are open:
   p50/p99 and the ratio to 1. Target: p99 <= 20 ms.
3. A 100 MB header: time from the byte that passed the 64 KB limit to the 431, and the node's RSS growth
   (VmRSS before/after, VmHWM peak). Target: <= 100 ms, bounded growth.
The machine may be shared: run it more than once and compare the ratio, not absolute figures.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from overhead.gateway import _control_plane_off, _env, write_snapshot
from overhead.procs import free_port

LIMIT = 64 * 1024


def _status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


async def _response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    await reader.readexactly(length)
    return int(head.split()[1])


async def _latencies(port: int, secret: str, n: int) -> list[float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    req = b"GET /v1/models HTTP/1.1\r\nhost: x\r\nauthorization: Bearer %s\r\n\r\n" % secret.encode()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        writer.write(req)
        assert await _response(reader) == 200
        out.append(time.perf_counter() - t0)
    writer.close()
    return sorted(out)


def _p(lat: list[float], q: float) -> float:
    return lat[min(len(lat) - 1, int(len(lat) * q))] * 1000


async def _slowloris(port: int, stop: asyncio.Event) -> int:
    cuts = 0
    while not stop.is_set():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\n")
        try:
            while not stop.is_set() and not reader.at_eof():
                writer.write(b"x-slow: 1\r\n")
                await writer.drain()
                await asyncio.sleep(0.1)
        except ConnectionError:
            pass
        cuts += not stop.is_set()
        writer.close()
    return cuts


async def _big_header(port: int, pid: int) -> tuple[float, int, int, int]:
    rss0 = _status(pid, "VmRSS")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nx-big: ")
    chunk = b"a" * 16384
    sent, passed = 0, 0.0
    status = asyncio.create_task(_response(reader))
    try:
        while sent < 100 * 1024 * 1024 and not status.done():
            writer.write(chunk)
            await writer.drain()
            sent += len(chunk)
            if not passed and sent > LIMIT:
                passed = time.perf_counter()
    except ConnectionError:
        pass
    code = await asyncio.wait_for(status, 10)
    took = time.perf_counter() - passed
    writer.close()
    assert code == 431, code
    return took, _status(pid, "VmRSS") - rss0, _status(pid, "VmHWM"), sent


async def measure(args: argparse.Namespace, port: int, secret: str, pid: int) -> None:
    for _ in range(200):
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            break
        except OSError:
            await asyncio.sleep(0.1)
    await _latencies(port, secret, 100)  # warm-up
    base = await _latencies(port, secret, args.requests)
    print(f"normal client alone:        p50 {_p(base, .5):6.2f} ms  p99 {_p(base, .99):6.2f} ms")
    idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(args.idle)]
    stop = asyncio.Event()
    loris = [asyncio.create_task(_slowloris(port, stop)) for _ in range(args.slowloris)]
    await asyncio.sleep(0.5)
    loaded = await _latencies(port, secret, args.requests)
    stop.set()
    await asyncio.gather(*loris)
    for _, w in idle:
        w.close()
    p99 = _p(loaded, .99)
    print(f"+{args.idle} idle +{args.slowloris} slowloris: p50 {_p(loaded, .5):6.2f} ms  p99 {p99:6.2f} ms  "
          f"(x{p99 / _p(base, .99):.2f} of alone; target p99 <= 20 ms: {'met' if p99 <= 20 else 'NOT met'})")
    await asyncio.sleep(0.5)
    took, growth, hwm, sent = await _big_header(port, pid)
    print(f"100 MB header: 431 after {took * 1000:.1f} ms past the 64 KB limit (target <= 100 ms: "
          f"{'met' if took <= 0.1 else 'NOT met'}); client got to send {sent >> 10} KB; "
          f"node RSS growth {growth / 1e6:+.1f} MB, peak RSS {hwm / 1e6:.0f} MB")


def main(args: argparse.Namespace) -> None:
    import uvloop

    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "dataplane"
        pepper = secrets.token_hex(32)
        secret = write_snapshot(state, free_port(), pepper.encode())
        port = free_port()
        cp, _ = _control_plane_off()
        env = _env(state, port, pepper, cp, {})
        cli = [sys.executable, "-c", "from interlock.cli.main import main; main()", "dataplane", "--log-level", "WARNING"]
        proc = subprocess.Popen(cli, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            uvloop.run(measure(args, port, secret, proc.pid))
        finally:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--idle", type=int, default=2000)
    ap.add_argument("--slowloris", type=int, default=4)
    ap.add_argument("--requests", type=int, default=500)
    main(ap.parse_args())
