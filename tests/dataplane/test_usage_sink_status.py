"""A data plane that records no usage says so: a warning at start in its own log, its sink in the
node list, and a warning naming it in `interlock status` (real control plane + data plane processes)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from typing import Any

from tests.fixtures.cluster import ADMIN_TOKEN, Cluster


def _status(c: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "INTERLOCK_ADMIN_URL": c.admin_url, "INTERLOCK_ADMIN_TOKEN": ADMIN_TOKEN, "COLUMNS": "200"}
    return subprocess.run(["interlock", "status", *args], env=env, capture_output=True, text=True, timeout=60)


def test_a_node_without_usage_sink_is_reported(cluster_factory: Callable[..., Any]) -> None:
    c: Cluster = cluster_factory(nodes=1)  # the fixture starts data planes with INTERLOCK_USAGE_SINK=none
    log = c.nodes[0].proc.log_path.read_text()
    assert "INTERLOCK_USAGE_SINK=none: this node records NO usage" in log, log

    doc = json.loads(_status(c, "-o", "json").stdout)
    assert [(n["node_id"], n["usage_sink"]) for n in doc["nodes"]] == [("dp-0", "none")], doc

    table = _status(c)
    assert table.returncode == 0, table.stderr
    assert "warning: 1 node record no usage (INTERLOCK_USAGE_SINK=none): dp-0." in table.stdout, table.stdout
