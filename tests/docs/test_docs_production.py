"""The README's "Running in production" walkthrough and deploy/README.md's one-machine walkthrough,
run as written (the fenced blocks marked `<!-- doc-test: ... -->`), against the real production shape:
etcd, Kafka (KRaft), control plane, two data planes, ingest -> chDB, each its own process, started by
scripts/prod-local.sh. A documented command that fails fails the test (bash -e, pipefail).

Independent truth: what the client received (the usage in each response curl printed) and what the
fake provider says it served, against the rows that landed in ClickHouse (direct SQL on the chDB
directory after `down`), and `interlock spend` from the control plane (which reads ClickHouse through
ingest's query endpoint) against those rows (see `check_spend`).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.docblocks import doc_blocks
from tests.fixtures.ports import port_free
from tests.fixtures.requires import missing_service

ROOT = Path(__file__).resolve().parents[2]
BASE_PORTS = (2379, 2380, 9092, 9093, 8081, 50051, 8090, 9099, 8100, 8101)


def _free_offset() -> int:
    """An INTERLOCK_LOCAL_PORT_OFFSET whose every port is free (other tests use ephemeral ports)."""
    rng = random.Random()
    for _ in range(200):
        off = rng.randrange(1000, 14000, 10)
        if all(port_free(p + off) for p in BASE_PORTS):
            return off
    raise RuntimeError("no free port range for scripts/prod-local.sh")


def _checkout(tmp: Path) -> Path:
    """A directory shaped like a fresh clone (scripts, examples, .cache) so `.interlock/prod-local`
    lands in tmp and the docs' relative paths work unchanged."""
    work = tmp / "checkout"
    work.mkdir()
    for name in ("scripts", "examples", "deploy", ".cache"):
        if (ROOT / name).exists():
            (work / name).symlink_to(ROOT / name)
    return work


def _run(block: str, cwd: Path, env: dict[str, str], what: str, timeout: float = 300) -> str:
    script = "set -euo pipefail\nset -x\n" + block + "\n"
    proc = subprocess.run(["bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        logs = cwd / ".interlock" / "prod-local" / "logs"
        tails = "".join(f"\n--- {p.name} ---\n" + p.read_text(errors="replace")[-3000:]
                        for p in sorted(logs.glob("*.log"))) if logs.exists() else ""
        pytest.fail(f"documented commands ({what}) failed with {proc.returncode}:\nSTDOUT:\n{proc.stdout}\n"
                    f"STDERR:\n{proc.stderr}{tails}")
    return proc.stdout


def _env_file(cwd: Path) -> dict[str, str]:
    """The variables `source .interlock/prod-local/env` sets, read back through bash."""
    out = subprocess.run(["bash", "-c", "source .interlock/prod-local/env && env -0"], cwd=cwd, capture_output=True,
                         check=True).stdout.decode()
    return dict(item.split("=", 1) for item in out.split("\0") if "=" in item)


def _responses(stdout: str) -> list[dict[str, Any]]:
    return [doc for line in stdout.splitlines() if line.startswith("{")
            and (doc := json.loads(line)).get("object") == "chat.completion"]


def _wait_ingested(ingest_url: str, want: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    metrics: dict[str, Any] = {}
    while time.monotonic() < deadline:
        metrics = httpx.get(f"{ingest_url}/stats", timeout=2).json()
        if metrics["inserted"] + metrics["duplicates"] >= want:
            return
        time.sleep(0.3)
    raise AssertionError(f"ingest inserted fewer than {want} events in {timeout}s: {metrics}")


def _usage_rows(dsn: str) -> list[tuple[Any, ...]]:
    from ingest.clickhouse_writer import open_clickhouse

    writer = open_clickhouse(dsn)
    try:
        sql = (f"SELECT node_id, key_id, model, input_tokens, output_tokens, cost_usd, status "
               f"FROM {writer.database}.usage_events ORDER BY node_id")
        return [tuple(r) for r in writer.client.query(sql).result_rows]
    finally:
        writer.close()


def spend_by_node(cwd: Path, env: dict[str, str]) -> dict[str, Any]:
    """The README's production-spend block as written (it must exit 0), then the same query as JSON."""
    readme = doc_blocks(ROOT / "README.md")
    _run("source .interlock/prod-local/env\n" + readme["production-spend"], cwd, env, "README: interlock spend")
    out = _run("source .interlock/prod-local/env\ninterlock spend --by node --since 1h -o json", cwd, env,
               "interlock spend -o json")
    return json.loads(out)


def check_spend(spend: dict[str, Any], rows: list[tuple[Any, ...]]) -> None:
    """`interlock spend` from the control plane equals what landed in ClickHouse, per data plane."""
    got = {r["group"]["node"]: (r["requests"], Decimal(r["cost_usd"])) for r in spend["rows"]}
    want = {row[0]: (1, Decimal(row[5])) for row in rows}
    assert got == want, (got, want)


def test_production_walkthrough_as_documented(tmp_path: Path) -> None:
    if shutil.which("etcd") is None or shutil.which("java") is None or shutil.which("etcdctl") is None:
        missing_service("needs etcd + etcdctl (scripts/install-etcd.sh) and a JDK (Kafka)")
    readme = doc_blocks(ROOT / "README.md")
    deploy = doc_blocks(ROOT / "deploy" / "README.md")
    cwd = _checkout(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTERLOCK_")}
    env["INTERLOCK_LOCAL_PORT_OFFSET"] = str(_free_offset())
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")]))
    try:
        began = time.monotonic()
        out = _run(readme["production"], cwd, env, "README: Running in production")
        up_s = time.monotonic() - began
        _run(deploy["deploy-local"], cwd, env, "deploy/README.md: one-machine walkthrough")
        stack = _env_file(cwd)
        gateways = stack["INTERLOCK_GATEWAYS"].split()
        assert len(gateways) == 2, gateways

        # what the clients received: one completion per data plane
        replies = _responses(out)
        assert len(replies) == 2, out
        served = httpx.get(f"http://127.0.0.1:{9099 + int(env['INTERLOCK_LOCAL_PORT_OFFSET'])}/_fake/stats",
                           timeout=5).json()
        assert served["total"] == 2, served
        _wait_ingested(stack["INTERLOCK_INGEST_URL"], 2)
        nodes = httpx.get(f"{stack['INTERLOCK_ADMIN_URL']}/admin/v1/nodes", timeout=5,
                          headers={"Authorization": f"Bearer {stack['INTERLOCK_ADMIN_TOKEN']}"}).json()["nodes"]
        assert sorted((n["node_id"], n["usage_sink"]) for n in nodes) == [("dp-0", "kafka"), ("dp-1", "kafka")], nodes
        spend = spend_by_node(cwd, env)
    finally:
        _run(readme["production-down"], cwd, env, "README: prod-local.sh down")

    rows = _usage_rows(stack["INTERLOCK_CLICKHOUSE_DSN"])
    assert [r[0] for r in rows] == ["dp-0", "dp-1"], rows  # one request through each data plane
    assert len({r[1] for r in rows}) == 1 and rows[0][1].startswith("vk_"), rows  # the one key
    want_usd = Decimal(0)
    for row, reply in zip(rows, replies, strict=True):
        usage = reply["usage"]
        assert (row[3], row[4]) == (usage["prompt_tokens"], usage["completion_tokens"]), (row, usage)
        assert row[2] == "fake-small" and row[6] == 200, row
        # the policy --fake-provider wrote: $1 / $2 per 1M input / output tokens
        cost = (Decimal(usage["prompt_tokens"]) * 1 + Decimal(usage["completion_tokens"]) * 2) / 1_000_000
        assert Decimal(row[5]) == cost, (row, cost)
        want_usd += cost
    check_spend(spend, rows)
    assert sum(Decimal(r["cost_usd"]) for r in spend["rows"]) == want_usd
    print(f"production shape up + walkthrough in {up_s:.1f}s")
