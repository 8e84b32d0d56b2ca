"""Every table the CLI prints stays legible at 80 and at 200 columns: no column narrower than
render.MIN_COLUMN characters (columns give way by priority instead, and the caption says which).

Runs the real `interlock` commands against a real control plane (etcd, with a chDB usage store holding
events written by the real ingest writer) and data plane, and reads the widths from the rule under each
table header, where every column shows as its own run of '─'. Client-supplied text (model names, tags,
the declared actor) carries ESC/OSC sequences, which must reach the terminal escaped, never raw."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from interlock.cli.render import MIN_COLUMN
from tests.fixtures.cluster import ADMIN_TOKEN, Cluster

ROOT = Path(__file__).resolve().parents[2]
# Every command that prints a table (kafka init: test_kafka_init_table_fits, it needs a broker)
COMMANDS = (("keys", "list"), ("models", "list"), ("status",), ("budgets",), ("audit", "policy"),
            ("spend",), ("spend", "--by", "team,model"), ("top",), ("top", "--by", "model,tag:task"),
            ("cost", "--task", "T-1"), ("audit", "--since", "2d"), ("alerts",))
# Hostile client text: an OSC 52 clipboard write and a CSI screen clear
OSC, CSI = "\x1b]52;c;ZXZpbA==\x07", "\x1b[2J"
HOSTILE_MODEL = f"gpt-4o{OSC}"
HOSTILE_STEP = f"plan{CSI}"


def write_usage_events(dsn: str) -> None:
    """Usage events from the last day, through the ingest writer (run in a child: chDB admits one process
    per directory, and the control plane opens this one). Long names, cache tokens, refusals, fallbacks."""
    import uuid

    from ingest.clickhouse_writer import open_clickhouse
    from interlock_contracts.v1 import usage_pb2

    now_us = int(__import__("time").time() * 1e6)
    events = []
    for i in range(40):
        t = now_us - (i * 97 + 60) * 10**6
        model = (HOSTILE_MODEL, "claude-sonnet-4-20250514", "llama-3.3-70b-instruct-versatile")[i % 3]
        ok = i % 7 != 0
        events.append(usage_pb2.UsageEvent(
            event_id=uuid.UUID(int=i + 1).hex, received_unix_us=t, done_unix_us=t + 1_234_000,
            team_id=("payments-platform-engineering", "search", f"growth{CSI}")[i % 3], user_id=f"user-{i % 4}",
            key_id=f"vk_{i % 5:022d}", tags={"task": f"T-{i % 3}", "step": (HOSTILE_STEP, "code", "test")[i % 3]},
            requested_model="smart" if i % 2 else model, alias="smart" if i % 2 else "", model=model,
            provider="anthropic-us-east-prod" if "claude" in model else "openai", upstream_model=model + "-2025",
            route_rule="smart->cheapest-healthy" if i % 2 else "", status=200 if ok else 429,
            error_class="" if ok else "rate_limited", stream=bool(i % 2), input_tokens=123_456 + i,
            output_tokens=7_890 + i, cached_input_tokens=50_000 if i % 4 == 0 else 0,
            cache_write_5m_tokens=12_000 if i % 4 == 0 else 0, cost_usd=f"{1.234567 + i / 1000:.12f}" if ok else "",
            latency_ms=1_500 + i, client_disconnected=i % 11 == 0, fallback=i % 9 == 0, counted_tokens=0,
        ))  # fmt: skip
    with open_clickhouse(dsn) as writer:
        writer.insert_events(events)


def column_widths(output: str) -> list[list[int]]:
    """Content widths of each table's columns (the header rule's runs of '─', minus the 1-char padding)."""
    return [[len(run) - 1 for run in re.findall("─+", line)] for line in output.splitlines()
            if line.strip() and set(line.strip()) <= {"─", " "}]


def _cli(c: Cluster, columns: int, *args: str, code: int = 0) -> str:
    env = {**os.environ, "INTERLOCK_ADMIN_URL": c.admin_url, "INTERLOCK_ADMIN_TOKEN": ADMIN_TOKEN,
           "COLUMNS": str(columns)}
    proc = subprocess.run(["interlock", *args], env=env, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == code, (args, proc.stdout, proc.stderr)
    if "csv" not in args and "json" not in args:  # tables fit the terminal; CSV and JSON are data, as long as they are
        assert all(len(line) <= columns for line in proc.stdout.splitlines()), (args, columns, proc.stdout)
    return proc.stdout


@pytest.fixture
def busy_cluster(cluster_factory: Callable[..., Any]) -> Cluster:
    """A control plane with the complete example policy, keys with long names and owners, a data plane."""
    c: Cluster = cluster_factory(setup=False)
    dsn = f"chdb://{c.tmp / 'usage'}"
    subprocess.run([sys.executable, "-c", f"from tests.shell.test_cli_widths import write_usage_events as w; w({dsn!r})"],
                   check=True, cwd=ROOT, timeout=120)
    c.cp_env = {"INTERLOCK_USAGE_STORE": dsn}
    c.setup(nodes=1)
    # The complete example, plus an alert destination nobody listens on (its test delivery retries, with an error)
    doc = yaml.safe_load((ROOT / "examples" / "policy-complete.yaml").read_text())
    doc["destinations"] = [{"id": "finops-slack-channel", "kind": "slack", "url": "http://127.0.0.1:9/hook"}]
    (c.tmp / "policy.yaml").write_text(yaml.safe_dump(doc))
    env = {**os.environ, "INTERLOCK_ADMIN_URL": c.admin_url, "INTERLOCK_ADMIN_TOKEN": ADMIN_TOKEN}
    applied = subprocess.run(["interlock", "apply", "-f", str(c.tmp / "policy.yaml")], text=True,
                             env={**env, "INTERLOCK_ACTOR": "finops-automation"}, capture_output=True, stdin=subprocess.DEVNULL)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    subprocess.run(["interlock", "alerts", "test", "finops-slack-channel"], check=True, env=env, capture_output=True,
                   stdin=subprocess.DEVNULL)
    c.create_key(team="payments", user="carol", project="checkout", name="carol-checkout-service-ci-pipeline",
                 allowed_models=["smart", "fast", "local", "claude-sonnet-4"])
    c.explain_key = c.create_key(team="platform", user="alice", name="alice-laptop")["id"]  # type: ignore[attr-defined]
    return c


def test_every_table_is_legible_at_80_and_200_columns(busy_cluster: Cluster) -> None:
    narrow_hid: dict[tuple[str, ...], str] = {}
    explain = ("explain", "--key", busy_cluster.explain_key, "--model", "smart", "--tools",  # type: ignore[attr-defined]
               "--tag", "agent=claude-code")
    for args in (*COMMANDS, explain):
        for columns in (80, 200):
            out = _cli(busy_cluster, columns, *args)
            tables = column_widths(out)
            assert tables, f"`interlock {' '.join(args)}` printed no table:\n{out}"
            for widths in tables:
                assert min(widths) >= MIN_COLUMN, f"`interlock {' '.join(args)}` at {columns} columns: {widths}\n{out}"
            if columns == 80 and "hidden at 80 columns" in out:
                narrow_hid[args] = out
            if columns == 200:
                assert "hidden at" not in out, out
            assert "\x1b" not in out and "\x07" not in out, f"`interlock {' '.join(args)}` printed raw controls"
    # the hostile names were there, and were shown escaped: spend by team, the cost's steps, the audit trail's
    # models (a declared actor cannot carry them: HTTP refuses control characters in headers)
    assert "growth\\x1b[2J" in _cli(busy_cluster, 200, "spend")
    assert "plan\\x1b[2J" in _cli(busy_cluster, 200, "cost", "--task", "T-0")
    assert "gpt-4o\\x1b]52;c;ZXZpbA==" in _cli(busy_cluster, 200, "audit", "--since", "2d")
    # explain prints the model a client asked for (refused: unknown model, exit 1), escaped
    refused = _cli(busy_cluster, 200, "explain", "--key", busy_cluster.explain_key,  # type: ignore[attr-defined]
                   "--model", HOSTILE_MODEL, "--tag", f"agent={OSC}", code=1)
    assert "\x1b" not in refused and "\x07" not in refused and "gpt-4o\\x1b]52" in refused, refused
    # the widest tables give way at 80 columns (and say so) rather than wrapping into fragments
    assert ("budgets",) in narrow_hid, narrow_hid.keys()
    _list_commands_speak_csv(busy_cluster)  # same cluster: starting one costs more than this check


def test_tables_escape_controls_in_cells_however_built() -> None:
    """render.table rows added with Table.add_row and styled Text (explain, alerts, audit policy do) are escaped
    like render.add_row's."""
    from rich.console import Console
    from rich.text import Text

    from controlplane.audit_api import PolicyAuditLogOut
    from interlock.cli import render
    from interlock.cli.audit_cmds import policy_log_table

    t = render.table("MODEL", "TAG")
    t.add_row(Text(HOSTILE_MODEL, style="bold"), f"step={HOSTILE_STEP}")
    log = PolicyAuditLogOut.model_validate({"since": None, "since_unix_ms": None, "limit": 50, "truncated": False, "records": [{
        "id": "r1", "at": "2026-12-06T02:00:00Z", "at_unix_ms": 1, "actor": f"ops{OSC}", "actor_role": "admin",
        "actor_verified": False, "on_behalf_of_unverified": f"eve{CSI}", "action": "apply", "subject": "", "version": 3, "base_version": 2,
        "changes": [], "values_omitted": False}]})
    # (rich's Text drops BEL, BS, VT, FF and CR itself; ESC and the rest are escaped here)
    for table, shown in ((t, "gpt-4o\\x1b]52;c;ZXZpbA=="), (policy_log_table(log), "eve\\x1b[2J")):
        console = Console(width=120, record=True)
        console.print(table)
        out = console.export_text(styles=False)
        assert "\x1b" not in out and "\x07" not in out and shown in out, out


def test_column_widths_reads_the_header_rule() -> None:
    out = "NAME   KIND\n────── ─────\nfast   alias\n"
    assert column_widths(out) == [[5, 4]]


def _list_commands_speak_csv(busy_cluster: Cluster) -> None:
    keys = list(csv.DictReader(io.StringIO(_cli(busy_cluster, 80, "keys", "list", "-o", "csv"))))
    assert {k["name"] for k in keys} == {"carol-checkout-service-ci-pipeline", "alice-laptop"}, keys
    assert all(k["id"].startswith("vk_") and "secret" not in k and "key_hash" not in k for k in keys), keys
    carol = next(k for k in keys if k["name"].startswith("carol"))
    assert carol["allowed_models"] == "smart;fast;local;claude-sonnet-4", carol
    models = {m["name"]: m for m in csv.DictReader(io.StringIO(_cli(busy_cluster, 80, "models", "list", "-o", "csv")))}
    assert models["smart"]["kind"] == "alias" and "gpt-4.1" in models, models.keys()
    nodes = list(csv.DictReader(io.StringIO(_cli(busy_cluster, 80, "status", "-o", "csv"))))
    assert [(n["node_id"], n["usage_sink"]) for n in nodes] == [("dp-0", "none")], nodes
    budgets = list(csv.DictReader(io.StringIO(_cli(busy_cluster, 80, "budgets", "-o", "csv"))))
    assert {"payments-monthly", "alice-daily"} <= {b["limit_id"] for b in budgets}, budgets
    _every_table_command_speaks_json_and_csv(busy_cluster)


def _every_table_command_speaks_json_and_csv(c: Cluster) -> None:
    explain = ("explain", "--key", c.explain_key, "--model", "smart")  # type: ignore[attr-defined]
    for args in (*COMMANDS, explain, ("whoami",)):
        data = json.loads(_cli(c, 80, *args, "-o", "json"))
        assert data, args
        rows = list(csv.reader(io.StringIO(_cli(c, 80, *args, "-o", "csv"))))
        assert len(rows) >= 2 and all(len(r) == len(rows[0]) for r in rows), (args, rows)
    spend = {r["team"]: r for r in csv.DictReader(io.StringIO(_cli(c, 80, "spend", "-o", "csv")))}
    assert spend["search"]["requests"] == str(sum(1 for i in range(40) if i % 3 == 1)), spend
    routed = json.loads(_cli(c, 80, *explain, "-o", "json"))
    deployments = list(csv.DictReader(io.StringIO(_cli(c, 80, *explain, "-o", "csv"))))
    assert [d["deployment"] for d in deployments] == [
        d["deployment"] for t in routed["targets"] for d in t["deployments"]], deployments


@pytest.mark.parametrize("columns", [80, 200])
def test_kafka_init_table_fits(columns: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`interlock kafka init` prints through render.emit_rows (its broker round trip is tested in
    test_kafka_init); the table it builds, with its longest notes, fits at both widths."""
    from interlock.cli.render import emit_rows

    monkeypatch.setenv("COLUMNS", str(columns))
    rows = [["interlock.usage.v1", "created", "12", "1", "replication factor 1: fine for one broker, not production"],
            ["interlock.usage.v1.dlq", "exists", "12", "3", f"left as is (asked for 24 partitions){CSI}"]]
    emit_rows("table", ["TOPIC", "ACTION", "PARTITIONS", "REPLICAS", "NOTE"], rows, title="Kafka 127.0.0.1:9092")
    out = capsys.readouterr().out
    assert all(min(w) >= MIN_COLUMN for w in column_widths(out)) and column_widths(out), out
    assert all(len(line) <= columns for line in out.splitlines()) and "\x1b" not in out, out
