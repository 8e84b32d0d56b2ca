"""The batched access log: what a line says is taken from the record (checked against values computed here,
hostile strings included), nothing is lost at a graceful stop (a real node, checked against the request ids the
clients received), and a stalled stdout neither blocks the caller nor grows memory: lines beyond the bounds
are dropped and counted, and written + dropped = logged. Batching is the node's RequestObserver."""

from __future__ import annotations

import asyncio
import io
import json
import re
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import orjson
import pytest

from dataplane.dialects.base import Usage
from dataplane.observe import node as observe_node
from dataplane.observe.access_log import AccessLog
from dataplane.observe.metrics import RequestMetrics
from dataplane.observe.node import RequestObserver, node_registry
from dataplane.routing.report import AttemptRecord
from dataplane.snapshot.policy import KeyEntry
from dataplane.usage.event import EventIds, RequestRecord
from interlock_contracts.metrics.exposition import Registry
from tests.fixtures.gateway import running_gateway

KEY = KeyEntry(id="vk_1", team_id='team "q"', user_id="u\\1", project_id="p=1 x", allowed=None, expires_at_ms=0,
               revoked=False, tags={"secret-tag": "do-not-log"})
HOSTILE = ['plain', 'with "quotes"', "back\\slash", "new\nline", "tab\tand\x01ctl", "ünïcødé ✓", "a=b c", "",
           "x" * 300, "lone \ud800 surrogate"]


class Sink(io.RawIOBase):
    def __init__(self) -> None:
        self.data = bytearray()
        self.writes = 0

    def write(self, b: Any) -> int:
        self.data += b
        self.writes += 1
        return len(b)


def _record(ids: EventIds, i: int) -> RequestRecord:
    rec = RequestRecord(ids, "openai", "/v1/chat/completions", 100 + i)
    rec.key = KEY if i % 3 else None
    rec.requested_model = HOSTILE[i % len(HOSTILE)]
    rec.model = HOSTILE[(i + 1) % len(HOSTILE)]
    rec.provider, rec.route_rule = "fo", ("default" if i % 2 else "rule \"7\"")
    rec.status = (200, 429, 502, 0)[i % 4]
    rec.error_class = "" if rec.status == 200 else "upstream_5xx"
    rec.first_byte_s = rec.received_s + 0.0123456 if i % 5 else 0.0
    rec.done_s = rec.received_s + 0.25 if i % 7 else 0.0
    rec.stream = bool(i % 2)
    rec.client_disconnected = i % 11 == 0
    rec.usage = Usage(input_tokens=i, output_tokens=2 * i)
    rec.cost_pico = 1234567 * i
    rec.response_bytes = 10 * i
    rec.policy_version = 9
    rec.attempts = [AttemptRecord("fo", f"m/d{j}", "up", 502 if j < i % 3 else 200, "", 5) for j in range(i % 3 + 1)]
    return rec


def _expected(rec: RequestRecord) -> dict[str, Any]:
    """What the line must say, computed from the record here (not by the code under test)."""
    k = rec.key
    return {
        "ts": rec.received_s, "msg": "access", "request_id": rec.event_id, "status": rec.status,
        "error": rec.error_class,
        "latency_ms": round((rec.done_s - rec.received_s) * 1000, 3) if rec.done_s else 0,
        "ttfb_ms": round((rec.first_byte_s - rec.received_s) * 1000, 3) if rec.first_byte_s else 0,
        "attempts": len(rec.attempts), "route_attempts": ",".join(f"{a.deployment}:{a.status}" for a in rec.attempts),
        "stream": rec.stream, "input_tokens": rec.usage.input_tokens, "output_tokens": rec.usage.output_tokens,
        "cost_usd": rec.cost_pico / 1e12, "bytes_in": rec.request_bytes, "bytes_out": rec.response_bytes,
        "client_disconnected": rec.client_disconnected, "policy_version": 9, "node": "node-a",
        "key_id": k.id if k else "", "team": k.team_id if k else "", "user": k.user_id if k else "",
        "project": k.project_id if k else "", "dialect": "openai", "endpoint": "/v1/chat/completions",
        "requested_model": rec.requested_model[:200], "model": rec.model, "provider": "fo", "route": rec.route_rule,
    }


def _same(line: dict[str, Any], want: dict[str, Any]) -> None:
    assert list(line) == list(want)
    for f, v in want.items():
        got = line[f]
        if f in ("latency_ms", "ttfb_ms"):
            assert got == pytest.approx(v, abs=0.0011), f
        elif f == "requested_model" or f == "model":
            # a lone surrogate cannot be UTF-8: it is escaped (JSON) and comes back as the same code point
            assert got == v, f
        else:
            assert got == v and type(got) is type(v), (f, got, v)


def test_json_lines_say_what_the_record_says_hostile_strings_included() -> None:
    ids, sink = EventIds(), Sink()
    log = AccessLog("json", "node-a", sink)
    recs = [_record(ids, i) for i in range(200)]
    for i in range(0, 200, 16):
        log.write_batch(recs[i:i + 16])
    log.close()
    lines = bytes(sink.data).split(b"\n")
    assert lines[-1] == b"" and len(lines) == 201
    for raw, rec in zip(lines, recs, strict=False):
        line = json.loads(raw)  # the stdlib parser: an independent check of the JSON
        _same(line, _expected(rec))
        assert b"do-not-log" not in raw and b"secret-tag" not in raw
    assert log.dropped == 0


def _logfmt(line: str) -> dict[str, str]:
    out = {}
    for m in re.finditer(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)', line):
        v = m.group(2)
        if v.startswith('"'):
            v = re.sub(r'\\(u[0-9a-f]{4}|.)', lambda x: chr(int(x.group(1)[1:], 16)) if len(x.group(1)) == 5
                       else {"n": "\n", "t": "\t", "r": "\r"}.get(x.group(1), x.group(1)), v[1:-1])
        out[m.group(1)] = v
    return out


def test_the_observer_holds_a_bounded_batch_and_releases_it() -> None:
    """Finished records wait for the batch at most `flush_records` at a time, and none is kept after it."""
    sink = Sink()
    obs = RequestObserver(RequestMetrics(Registry()), AccessLog("json", "node-a", sink), flush_records=8)
    recs = [_record(EventIds(), i) for i in range(20)]
    before = [sys.getrefcount(r) for r in recs]
    asyncio.run(_feed(obs, recs, sleep_every=0))
    assert obs.pending == 20 % 8  # two full batches went out on their own, the rest waits for the timer
    after = [sys.getrefcount(r) for r in recs]
    assert [a - b for a, b in zip(after, before, strict=True)] == [0] * 16 + [1] * 4
    obs.flush()
    assert obs.pending == 0 and [sys.getrefcount(r) for r in recs] == before
    obs._access.close()  # type: ignore[union-attr]
    assert len(bytes(sink.data).splitlines()) == 20


async def _feed(obs: RequestObserver, recs: list[RequestRecord], sleep_every: int, pause: float = 0.0) -> None:
    for i, rec in enumerate(recs):
        obs.done(rec)
        if sleep_every and i % sleep_every == 0:
            await asyncio.sleep(pause)


def test_logfmt_lines_say_what_the_record_says() -> None:
    ids, sink = EventIds(), Sink()
    log = AccessLog("logfmt", "node-a", sink)
    recs = [_record(ids, i) for i in range(60)]
    log.write_batch(recs)
    log.close()
    lines = bytes(sink.data).decode().split("\n")[:-1]  # valid UTF-8, one line per request
    assert len(lines) == 60
    for raw, rec in zip(lines, recs, strict=True):
        got = _logfmt(raw)
        want = _expected(rec)
        assert list(got) == list(want)
        for f in ("request_id", "key_id", "team", "user", "project", "route", "route_attempts", "error",
                  "requested_model", "model", "input_tokens", "policy_version"):
            assert got[f] == str(want[f]), f
        assert got["status"] == str(rec.status) and got["stream"] == ("true" if rec.stream else "false")
        assert float(got["cost_usd"]) == want["cost_usd"]


async def test_lines_are_batched_off_the_request_path_and_all_written_at_close() -> None:
    ids, sink = EventIds(), Sink()
    log = AccessLog("json", "node-a", sink)
    metrics = RequestMetrics(Registry())
    obs = RequestObserver(metrics, log, flush_s=0.02, flush_records=256)
    recs = [_record(ids, i) for i in range(3000)]
    await _feed(obs, recs, sleep_every=500, pause=0.03)  # the timer flushes part of it
    assert sink.writes < 3000 / 50  # batched: one write per chunk, not per line
    assert obs.pending > 0  # the last ones wait for the next batch
    await obs.aclose()  # what the timer has not flushed yet is written now
    got = [json.loads(x)["request_id"] for x in bytes(sink.data).splitlines()]
    assert got == [r.event_id for r in recs]
    assert sum(r[0] for r in metrics.requests.values.values()) == 3000  # every request counted, once
    log.write(recs[0])  # after close: counted, never half-written
    assert log.dropped == 1 and len(bytes(sink.data).splitlines()) == 3000


class StalledStdout(io.RawIOBase):
    """A stdout nobody reads: write() blocks until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.data = bytearray()

    def write(self, b: Any) -> int:
        self.release.wait()
        self.data += b
        return len(b)


async def test_a_stalled_stdout_bounds_memory_and_counts_drops_without_blocking() -> None:
    ids, out = EventIds(), StalledStdout()
    log = AccessLog("json", "node-a", out, max_bytes=64 * 1024)
    obs = RequestObserver(None, log, flush_s=0.01, flush_records=50)
    recs = [_record(ids, i) for i in range(20_000)]
    worst = 0.0
    for i, rec in enumerate(recs):
        t = time.perf_counter()
        obs.done(rec)
        worst = max(worst, time.perf_counter() - t)
        assert obs.pending <= 50 and log.queued_bytes <= 64 * 1024
        if i % 1000 == 0:
            await asyncio.sleep(0.015)
    assert worst < 0.5, f"a write() took {worst:.3f}s: the caller waited for the stalled stdout"
    assert log.dropped > 10_000  # most lines could not be kept
    out.release.set()  # stdout drains again
    await obs.aclose()
    written = [json.loads(x)["request_id"] for x in bytes(out.data).splitlines()]
    assert len(written) + log.dropped == len(recs)
    order = {r.event_id: n for n, r in enumerate(recs)}
    assert [order[w] for w in written] == sorted(order[w] for w in written)  # whole lines, in order, no repeats
    assert len(out.data) > 32 * 1024  # what fitted in the bounds (64 KB of lines) was kept


def test_a_broken_stdout_does_not_raise_and_counts_what_it_lost() -> None:
    class Broken(io.RawIOBase):
        def write(self, b: Any) -> int:
            raise BrokenPipeError("reader went away")

    log = AccessLog("json", "node-a", Broken())
    for i in range(3):
        log.write(_record(EventIds(), i))  # no loop: each one is a chunk of its own
    log.close()
    assert log.dropped == 3  # lost lines are counted, and the writer kept going after the first failure


def test_dropped_lines_are_a_metric() -> None:
    log = AccessLog("json", "n", Sink())
    log.close()
    log.write(_record(EventIds(), 1))  # after close: refused and counted
    reg, _ = node_registry(metrics_on=True, in_flight=lambda: 0, circuits=lambda: [], sink=SimpleNamespace(
                           emitted=0, written=0, dropped=0, failed_batches=0),
                           policy_version=lambda: 1, snapshot_created_ms=lambda: 0, budget_section=lambda: b"",
                           access=log)
    assert b"interlock_access_log_dropped_lines_total 1" in reg.render()


async def test_a_node_writes_every_line_at_graceful_stop(fake_provider, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                         capfd: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(observe_node, "FLUSH_S", 60.0)  # no timer flush: every line is still buffered at stop
    got: list[str] = []
    async with running_gateway(fake_provider.base_url, tmp_path) as gw:
        async with httpx.AsyncClient(timeout=10) as http:
            async def one() -> None:
                r = await http.post(f"{gw.url}/v1/chat/completions", headers={"authorization": f"Bearer {gw.key}"},
                                    json={"model": "fast", "messages": [{"role": "user", "content": "hi"}]})
                assert r.status_code == 200, r.text
                got.append(r.headers["x-interlock-request-id"])

            await asyncio.gather(*(one() for _ in range(150)))
    out = capfd.readouterr().out
    lines = [orjson.loads(x) for x in out.splitlines() if x.startswith('{"ts"')]
    logged = [x["request_id"] for x in lines if x["msg"] == "access"]
    assert sorted(logged) == sorted(got) and len(got) == 150
    assert {x["key_id"] for x in lines} == {gw.key_id} and gw.key not in out


def test_a_failing_metric_does_not_cost_the_access_log_its_batch(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(RequestMetrics):
        def record(self, rec: RequestRecord) -> None:
            raise RuntimeError("a bug in a metric")

    sink = Sink()
    log = AccessLog("json", "node-a", sink)
    obs = RequestObserver(Broken(Registry()), log, flush_records=4)
    recs = [_record(EventIds(), i) for i in range(8)]
    for rec in recs:
        obs.done(rec)  # no loop: flushed at once; the failure is logged, never raised to the request
    log.close()
    assert [json.loads(x)["request_id"] for x in bytes(sink.data).splitlines()] == [r.event_id for r in recs]
    assert "recording metrics for 1 requests failed" in caplog.text
