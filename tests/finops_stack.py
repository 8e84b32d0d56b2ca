"""The one-machine production shape with FinOps wired, for the usage-API and console tests.

etcd, `interlock controlplane` (INTERLOCK_USAGE_STORE=ingest+http://... with viewer/operator identities),
two `interlock dataplane` nodes with INTERLOCK_USAGE_SINK=kafka, a Kafka broker, `interlock ingest`
into chDB serving read-only queries, and the fake provider. `drive()` sends tagged traffic through both
nodes and records what the clients were actually served (the independent truth for the checks).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.cluster import ADMIN_TOKEN, Cluster, Proc, chat_body, free_port, wait_until

VIEWER_TOKEN, OPERATOR_TOKEN = "e2e-viewer-token-0123456789", "e2e-operator-token-0123456789"
QUERY_TOKEN = "e2e-ingest-query-token-0123456789"
PRICE_IN, PRICE_OUT = Decimal(1), Decimal(2)  # USD per 1M tokens, as Cluster.policy() sets for every model


def credentials() -> str:
    def sha(t: str) -> str:
        return hashlib.sha256(t.encode()).hexdigest()

    return json.dumps([{"name": "fin-viewer", "role": "viewer", "token_sha256": sha(VIEWER_TOKEN)},
                       {"name": "ops-operator", "role": "operator", "token_sha256": sha(OPERATOR_TOKEN)}])


@dataclass
class Served:
    """What one client was served: the truth the usage API must agree with."""

    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    request_ids: list[str] = field(default_factory=list)

    @property
    def cost(self) -> Decimal:
        return (self.input_tokens * PRICE_IN + self.output_tokens * PRICE_OUT) / Decimal(1_000_000)


@dataclass
class FinOpsStack:
    cluster: Cluster
    ingest: Proc
    ingest_port: int
    keys: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> created key (with secret)
    served: dict[str, Served] = field(default_factory=lambda: defaultdict(Served))  # key name / team:X / task:X

    @property
    def admin_url(self) -> str:
        return self.cluster.admin_url

    def cli(self, *args: str, token: str = ADMIN_TOKEN, json_flags: tuple[str, ...] = ("-o", "json")) -> Any:
        env = {**self.cluster._base_env(), "INTERLOCK_ADMIN_URL": self.admin_url, "INTERLOCK_ADMIN_TOKEN": token}
        r = subprocess.run(["interlock", *args, *json_flags], env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, f"interlock {' '.join(args)}: {r.stdout}\n{r.stderr}"
        return json.loads(r.stdout)

    def budgets(self) -> Any:
        """`interlock budgets` as JSON (--json today; -o json once the CLI's outputs are unified)."""
        try:
            return self.cli("budgets", json_flags=("--json",))
        except AssertionError:
            return self.cli("budgets")

    def drive(self, plan: list[tuple[str, str, str]]) -> None:
        """plan: (key name, model, tags header) per request, spread over both nodes."""
        with httpx.Client(timeout=30) as http:
            for i, (name, model, tags) in enumerate(plan):
                node = self.cluster.nodes[i % len(self.cluster.nodes)]
                key = self.keys[name]
                r = http.post(f"{node.openai_base}/chat/completions", json=chat_body(model),
                              headers={"Authorization": f"Bearer {key['secret']}", "x-interlock-tags": tags})
                assert r.status_code == 200, r.text
                usage = r.json()["usage"]
                task = dict(p.split("=") for p in tags.split(",")).get("task", "")
                for bucket in (name, f"team:{key['team']}", f"task:{task}"):
                    s = self.served[bucket]
                    s.requests += 1
                    s.input_tokens += usage["prompt_tokens"]
                    s.output_tokens += usage["completion_tokens"]
                    s.request_ids.append(r.headers["x-interlock-request-id"])

    def inserted(self) -> int:
        return int(httpx.get(f"http://127.0.0.1:{self.ingest_port}/stats", timeout=2).json()["inserted"])

    def wait_ingested(self, n: int, timeout_s: float = 90) -> None:
        def done() -> bool:
            m = httpx.get(f"http://127.0.0.1:{self.ingest_port}/stats", timeout=2).json()
            return int(m["inserted"]) >= n and m["lag_total"] == 0

        wait_until(done, timeout_s, f"ingest to insert {n} events", interval=0.25)

    def sql(self, sql: str) -> list[tuple[Any, ...]]:
        """Hand-written SQL straight on the ingest's ClickHouse (chDB), none of ingest.queries involved."""
        from ingest.query_remote import RemoteQueryClient

        c = RemoteQueryClient(f"http://127.0.0.1:{self.ingest_port}", QUERY_TOKEN)
        try:
            return c.query(sql).result_rows
        finally:
            c.close()


def build(tmp: Path, etcd: Any, kafka_bootstrap: str) -> FinOpsStack:
    c = Cluster(tmp=tmp, etcd=etcd, prefix=f"/finops-{uuid.uuid4().hex[:10]}")
    topic = f"finops-{uuid.uuid4().hex[:10]}"
    c.usage_env = {"INTERLOCK_USAGE_SINK": "kafka", "INTERLOCK_KAFKA_BOOTSTRAP": kafka_bootstrap,
                   "INTERLOCK_KAFKA_TOPIC": topic}
    ingest_port = free_port()
    c.cp_env = {"INTERLOCK_USAGE_STORE": f"ingest+http://127.0.0.1:{ingest_port}",
                "INTERLOCK_USAGE_STORE_TOKEN": QUERY_TOKEN, "INTERLOCK_ADMIN_CREDENTIALS": credentials()}
    ingest, _ = c.add_ingest(kafka_bootstrap, tmp / "ch", topic, port=ingest_port,
                             extra_env={"INTERLOCK_INGEST_QUERY_TOKEN": QUERY_TOKEN})
    c.start_fake_provider()
    c.start_control_plane()
    doc = c.policy()
    doc["teams"].append({"id": "ml", "name": "ML", "allowed_models": ["m-a", "m-b", "fast"]})
    # keys that tests create later (tests/controlplane/test_console_browser.py) live here, apart from PLAN's teams
    doc["teams"].append({"id": "sandbox", "name": "Sandbox", "allowed_models": ["m-a"]})
    doc["users"] = [{"id": "alice", "team": "eng"}, {"id": "bob", "team": "eng"}, {"id": "carol", "team": "ml"}]
    doc["budgets"] = [{"id": "eng-monthly", "scope": "team", "scope_id": "eng", "window": "month", "limit_usd": "5"}]
    doc["rate_limits"] = [{"id": "ml-rpm", "scope": "team", "scope_id": "ml", "requests_per_minute": 10_000}]
    c.apply(doc)
    for _ in range(2):
        c.add_node()
    for n in c.nodes:
        c.wait_ready(n)
    c.wait_in_sync()
    wait_until(lambda: httpx.get(f"http://127.0.0.1:{ingest_port}/healthz", timeout=1).status_code < 500, 60,
               "ingest health")
    stack = FinOpsStack(c, ingest, ingest_port)
    for name, team, user in (("alice", "eng", "alice"), ("bob", "eng", "bob"), ("carol", "ml", "carol")):
        stack.keys[name] = c.create_key(team=team, user=user)
    c.wait_in_sync()
    time.sleep(0.5)
    return stack


PLAN = [("alice", "m-a", "task=T-1,step=plan"), ("alice", "m-b", "task=T-1,step=code"),
        ("bob", "m-a", "task=T-2,step=plan"), ("carol", "fast", "task=T-3,step=code")] * 6


@pytest.fixture(scope="session")
def finops(etcd_server: Any, kafka_broker: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FinOpsStack]:
    """The stack after PLAN's traffic, all of it in ClickHouse; shared by the usage-API and console tests."""
    etcd_server.start()
    kafka_broker.start()
    s = build(tmp_path_factory.mktemp("finops"), etcd_server, kafka_broker.bootstrap)
    try:
        s.drive(PLAN)
        s.wait_ingested(len(PLAN))
        yield s
    except BaseException:
        print(s.cluster.dump_logs())
        raise
    finally:
        s.cluster.stop_all()
