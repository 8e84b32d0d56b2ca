"""Logs operators can read: repeated connection errors collapse into one line per interval with a count
(a node whose Kafka broker dies, measured against the same node with the filter off), and every process
logs its effective configuration at start with secrets masked."""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from pathlib import Path

import httpx

from interlock.logsetup import RepeatFilter, describe
from interlock_contracts.settings.dataplane import DataPlaneSettings
from tests.fixtures.cluster import Proc, free_port, wait_until
from tests.fixtures.kafka import KafkaBroker

PEPPER = "pepper-do-not-log-7f3a"
NOISY_LINE = re.compile(r" (WARNING|ERROR) (aiokafka|kafka|dataplane\.usage_kafka)")


def _record(name: str, msg: str, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, ("x",), None)


def test_repeat_filter_counts_what_it_drops() -> None:
    now = [0.0]
    f = RepeatFilter(10.0, clock=lambda: now[0])
    passed = []
    for i in range(100):  # 100 identical connection errors in one second: one line
        now[0] = i / 100
        r = _record("aiokafka.conn", "Unable connect to %s")
        if f.filter(r):
            passed.append(r)
    assert len(passed) == 1
    now[0] = 10.5  # next interval: the next one passes and says how many were dropped
    r = _record("aiokafka.conn", "Unable connect to %s")
    assert f.filter(r) and "[repeated 99 more times" in r.getMessage()
    # other templates, INFO records and request-path loggers are never held back
    assert f.filter(_record("aiokafka.conn", "another message %s"))
    assert all(f.filter(_record("aiokafka", "Unable connect to %s", logging.INFO)) for _ in range(5))
    assert all(f.filter(_record("dataplane.node", "unhandled error %s")) for _ in range(5))


def test_settings_description_masks_secrets() -> None:
    s = DataPlaneSettings(node_id="n1", key_pepper=PEPPER.encode(), node_token=b"tok-secret",
                          clickhouse_dsn="http://user:hunter2@ch:8123/db")
    text = describe(s)
    assert PEPPER not in text and "tok-secret" not in text and "hunter2" not in text
    assert "key_pepper=***" in text and "node_token=***" in text and "user:***@ch:8123" in text
    assert "node_id='n1'" in text and "budget_tick_s=0.5" in text


def _node(tmp: Path, name: str, bootstrap: str, interval: str) -> tuple[Proc, int]:
    port = free_port()
    env = {**os.environ, "INTERLOCK_KEY_PEPPER": PEPPER, "INTERLOCK_CONTROL_PLANE": "", "INTERLOCK_NODE_ID": name,
           "INTERLOCK_DP_PORT": str(port), "INTERLOCK_DP_STATE_DIR": str(tmp / name), "INTERLOCK_USAGE_SINK": "kafka",
           "INTERLOCK_KAFKA_BOOTSTRAP": bootstrap, "INTERLOCK_LOG_REPEAT_INTERVAL_S": interval,
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = Proc(name, [sys.executable, "-c", "from interlock.cli.main import main; main()", "dataplane"], env,
                tmp / f"{name}.log")
    proc.start()
    return proc, port


def _direct(port: int) -> bool:
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return False
    return "interlock_usage_sink_direct 1" in text


def test_kafka_outage_logs_one_line_per_interval(kafka: KafkaBroker, tmp_path: Path) -> None:
    limited, lport = _node(tmp_path, "limited", kafka.bootstrap, "5")
    raw, rport = _node(tmp_path, "raw", kafka.bootstrap, "0")  # the same node with the filter off: the baseline
    try:
        wait_until(lambda: _direct(lport) and _direct(rport), 90, "both nodes connected to Kafka")
        marks = {p.name: p.log_path.stat().st_size for p in (limited, raw)}
        kafka.kill()
        # keep producing usage events (no policy: each request is refused with 503, and still metered)
        refused = 0
        with httpx.Client(timeout=2) as http:
            end = time.monotonic() + 12
            while time.monotonic() < end:
                for port in (lport, rport):
                    try:
                        refused += http.post(f"http://127.0.0.1:{port}/v1/chat/completions", json={}).status_code == 503
                    except httpx.HTTPError:
                        pass  # a slow machine: the count below is what matters
                time.sleep(0.05)
        assert refused >= 20
        limited.check_alive()
        raw.check_alive()
    finally:
        for p in (limited, raw):
            p.terminate()
    after = {p.name: p.log_path.read_bytes()[marks[p.name]:].decode(errors="replace") for p in (limited, raw)}
    noisy = {n: [ln for ln in text.splitlines() if NOISY_LINE.search(ln)] for n, text in after.items()}
    templates = {re.sub(r"\d+", "N", ln.split(": ", 1)[-1])[:60] for ln in noisy["limited"]}
    # at most one line per template per 5 s interval (12 s: 3 intervals)...
    assert len(noisy["limited"]) <= 3 * max(1, len(templates)) + 2, (len(noisy["raw"]), noisy["limited"])
    # ...standing for many more: the counts it reports, and what the same node logs with the filter off
    suppressed = sum(int(n) for ln in noisy["limited"] for n in re.findall(r"\[repeated (\d+) more times", ln))
    assert suppressed >= 3 * len(noisy["limited"]), (suppressed, noisy["limited"])
    assert len(noisy["raw"]) > len(noisy["limited"]), (len(noisy["raw"]), len(noisy["limited"]))
    # the effective configuration was logged at start, secrets masked
    whole = limited.log_path.read_text()
    assert "data plane effective configuration:" in whole and "key_pepper=***" in whole
    assert PEPPER not in whole
