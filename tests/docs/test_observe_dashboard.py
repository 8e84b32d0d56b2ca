"""The Grafana dashboard shipped in docs/ loads: valid dashboard JSON (unique panel ids, grid positions,
targets with PromQL on the Prometheus datasource variable), and every metric it queries is one a process
actually exposes (the names are taken from the real registries, not from a list kept here)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from controlplane.observe import ControlPlaneMetrics
from dataplane.observe.node import node_registry
from ingest.metrics import ingest_registry
from ingest.stats import IngestStats
from interlock_contracts.metrics.exposition import Counter, Histogram, Registry

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json"
PROMQL_FUNCS = {"sum", "rate", "increase", "histogram_quantile", "max", "min", "avg", "by", "le", "count"}


class _Sink:
    emitted = written = dropped = failed_batches = 0


def _exposed() -> tuple[set[str], set[str]]:
    async def nodes() -> list:  # type: ignore[type-arg]
        return []

    regs: list[Registry] = [
        node_registry(metrics_on=True, in_flight=lambda: 0, circuits=lambda: [], sink=_Sink(), policy_version=lambda: 1,
                      snapshot_created_ms=lambda: 0, budget_section=lambda: b"")[0],
        ControlPlaneMetrics(nodes=nodes, subscribers=lambda: 0, published_version=lambda: 0).registry,
        ingest_registry(IngestStats()),
    ]
    names = {"interlock_budget_refused_total", "interlock_budget_overshoot_total", "interlock_budget_pool",
             "interlock_budget_control_plane_reachable"}  # the budget section (dataplane/budget/metrics.py)
    labels: set[str] = set()
    for reg in regs:
        for m in reg._metrics:
            labels |= set(m.labelnames)
            if isinstance(m, Counter):
                names.add(m.name + "_total")
            elif isinstance(m, Histogram):
                names |= {m.name + s for s in ("_bucket", "_sum", "_count")}
            else:
                names.add(m.name)
    return names, labels


def test_dashboard_loads_and_queries_only_exposed_metrics() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["title"] and dash["uid"] and isinstance(dash["schemaVersion"], int)
    variables = {v["name"] for v in dash["templating"]["list"]}
    assert {"datasource", "job"} <= variables
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    exposed, labels = _exposed()
    queried: set[str] = set()
    for p in dash["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] == "${datasource}" and p["targets"], p["title"]
        for t in p["targets"]:
            expr = t["expr"]
            assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), expr
            for name in re.findall(r"\b((?:interlock|gen_ai)_[a-z0-9_]+)", expr):
                if name in labels:
                    continue
                queried.add(name)
                assert name in exposed, f"panel {p['title']!r} queries {name}, which no process exposes"
    # the dashboard covers each process
    assert any(n.startswith("interlock_cp_") for n in queried)
    assert any(n.startswith("interlock_ingest_") for n in queried)
    assert any(n.startswith("gen_ai_") for n in queried)
