"""examples/policy-complete.yaml applies to a fresh control plane (real process on etcd), and
`interlock policy get` exports the live policy in the format `apply` takes: applying the export
unchanged is a no-op, an edit applies as exactly that edit, and dropping a key's owner is refused
with a hint that says how to keep it."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from tests.fixtures.cluster import ADMIN_TOKEN, Cluster

ROOT = Path(__file__).resolve().parents[2]


def _cli(c: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "INTERLOCK_ADMIN_URL": c.admin_url, "INTERLOCK_ADMIN_TOKEN": ADMIN_TOKEN, "COLUMNS": "200"}
    return subprocess.run(["interlock", *args], env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def test_complete_example_applies_and_round_trips(cluster_factory: Callable[..., Any], tmp_path: Path) -> None:
    c: Cluster = cluster_factory(setup=False)
    c.start_control_plane()

    first = _cli(c, "apply", "-f", str(ROOT / "examples" / "policy-complete.yaml"))
    assert first.returncode == 0, first.stderr
    live = c.admin("GET", "/policy").json()["document"]
    assert {s: len(live[s]) for s in ("budgets", "rate_limits", "routes")} == {"budgets": 4, "rate_limits": 2, "routes": 2}
    sonnet = next(m for m in live["models"] if m["name"] == "claude-sonnet-4")
    assert sonnet["fallback"] == ["gpt-4.1"] and len(sonnet["deployments"]) == 2, sonnet

    got = _cli(c, "policy", "get")
    assert got.returncode == 0, got.stderr
    assert got.stdout.startswith("# Interlock policy version"), got.stdout[:200]
    exported = tmp_path / "policy.yaml"
    exported.write_text(got.stdout)
    again = _cli(c, "apply", "-f", str(exported))
    assert again.returncode == 0 and "no changes" in again.stdout, (again.stdout, again.stderr)

    # edit-and-apply: one budget's limit changes, nothing else
    doc = yaml.safe_load(got.stdout)
    next(b for b in doc["budgets"] if b["id"] == "alice-daily")["limit_usd"] = "30"
    exported.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    edit = _cli(c, "apply", "-f", str(exported))
    assert edit.returncode == 0, edit.stderr
    assert "0 to create, 1 to update, 0 to delete" in edit.stdout and "limit_usd" in edit.stdout, edit.stdout
    budgets = {b["id"]: b for b in c.admin("GET", "/policy").json()["document"]["budgets"]}
    assert budgets["alice-daily"]["limit_usd"] in ("30", "30.0"), budgets["alice-daily"]
    assert budgets["payments-monthly"]["limit_usd"] in ("500", "500.0"), budgets["payments-monthly"]


def test_dropping_a_keys_owner_is_refused_with_the_way_out(cluster_factory: Callable[..., Any], tmp_path: Path) -> None:
    c: Cluster = cluster_factory(setup=False)
    c.start_control_plane()
    assert _cli(c, "apply", "-f", str(ROOT / "examples" / "policy-complete.yaml")).returncode == 0
    key = c.create_key(team="eu-legal")
    c.revoke_key(key["id"])  # revoked keys keep their owner too

    doc = yaml.safe_load((ROOT / "examples" / "policy-complete.yaml").read_text())
    doc["teams"] = [t for t in doc["teams"] if t["id"] != "eu-legal"]
    path = tmp_path / "without-eu-legal.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    refused = _cli(c, "apply", "-f", str(path))
    assert refused.returncode == 1, refused.stdout
    assert f"virtual key {key['id']} belongs to team 'eu-legal'" in refused.stderr, refused.stderr
    assert "interlock policy get > policy.yaml" in refused.stderr, refused.stderr
