"""Every table the CLI prints stays legible at 80 and at 200 columns: no column narrower than
render.MIN_COLUMN characters (columns give way by priority instead, and the caption says which).

Runs the real `interlock` commands against a real control plane (etcd) and data plane, and reads the
widths from the rule under each table header, where every column shows as its own run of '─'."""

from __future__ import annotations

import csv
import io
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from interlock.cli.render import MIN_COLUMN
from tests.fixtures.cluster import ADMIN_TOKEN, Cluster

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = (("keys", "list"), ("models", "list"), ("status",), ("budgets",), ("audit", "policy"))


def column_widths(output: str) -> list[list[int]]:
    """Content widths of each table's columns (the header rule's runs of '─', minus the 1-char padding)."""
    return [[len(run) - 1 for run in re.findall("─+", line)] for line in output.splitlines()
            if line.strip() and set(line.strip()) <= {"─", " "}]


def _cli(c: Cluster, columns: int, *args: str) -> str:
    env = {**os.environ, "INTERLOCK_ADMIN_URL": c.admin_url, "INTERLOCK_ADMIN_TOKEN": ADMIN_TOKEN,
           "COLUMNS": str(columns)}
    proc = subprocess.run(["interlock", *args], env=env, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    if "csv" not in args:  # tables fit the terminal; CSV rows are data, as long as they are
        assert all(len(line) <= columns for line in proc.stdout.splitlines()), (args, columns, proc.stdout)
    return proc.stdout


@pytest.fixture
def busy_cluster(cluster_factory: Callable[..., Any]) -> Cluster:
    """A control plane with the complete example policy, keys with long names and owners, a data plane."""
    c: Cluster = cluster_factory(nodes=1)
    subprocess.run(["interlock", "apply", "-f", str(ROOT / "examples" / "policy-complete.yaml")], check=True,
                   env={**os.environ, "INTERLOCK_ADMIN_URL": c.admin_url, "INTERLOCK_ADMIN_TOKEN": ADMIN_TOKEN},
                   capture_output=True, stdin=subprocess.DEVNULL)
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
    # the widest tables give way at 80 columns (and say so) rather than wrapping into fragments
    assert ("budgets",) in narrow_hid, narrow_hid.keys()
    _list_commands_speak_csv(busy_cluster)  # same cluster: starting one costs more than this check


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
