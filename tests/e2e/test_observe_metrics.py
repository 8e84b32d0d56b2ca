"""GET /metrics on every process is valid Prometheus text (checked with prometheus_client's parser), and the
data plane's series agree with what clients actually received; the access log has one line per request,
matching the request id the client got, and never the key."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from ingest.health import HealthServer
from ingest.stats import IngestStats
from interlock.dev.settings import DevSettings
from interlock.dev.setup import FAKE_CLAUDE, FAKE_GPT
from interlock.dev.stack import DevStack
from tests.fixtures.cluster import free_port


def parse(text: str) -> dict[str, list[Sample]]:
    """Parse strictly: every family typed, histograms cumulative with _count == the +Inf bucket."""
    families = {}
    for fam in text_string_to_metric_families(text):
        assert fam.type in ("counter", "gauge", "histogram"), (fam.name, fam.type)
        assert fam.documentation, f"{fam.name} has no HELP"
        assert fam.name not in families, f"{fam.name} declared twice"
        families[fam.name] = fam.samples
        if fam.type == "histogram":
            series: dict[tuple, list[float]] = {}
            counts: dict[tuple, float] = {}
            for s in fam.samples:
                base = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
                if s.name.endswith("_bucket"):
                    series.setdefault(base, []).append(s.value)
                    if s.labels["le"] == "+Inf":
                        assert counts.get(base, s.value) == s.value
                        counts[base] = s.value
                elif s.name.endswith("_count"):
                    counts.setdefault(base, s.value)
                    assert counts[base] == s.value, (fam.name, base)
            for base, values in series.items():
                assert values == sorted(values), (fam.name, base, values)
    return families


def value(fams: dict[str, list[Sample]], family: str, sample: str | None = None, **labels: str) -> float:
    return sum(s.value for s in fams.get(family, []) if s.name == (sample or family)
               and all(s.labels.get(k) == v for k, v in labels.items()))


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")}


async def test_dataplane_and_controlplane_metrics_match_what_clients_got(tmp_path: Path,
                                                                         capfd: pytest.CaptureFixture[str]) -> None:
    s = DevSettings(data_dir=tmp_path / "dev", host="127.0.0.1", port=free_port(), admin_port=free_port(),
                    grpc_port=free_port(), fake_provider_port=free_port(), with_usage=False)
    stack = DevStack(s, env=_env())
    await stack.start()
    try:
        assert stack.node is not None
        base = f"http://127.0.0.1:{stack.node.port}"
        auth = {"authorization": f"Bearer {stack.virtual_key}"}
        got_ids: list[str] = []
        usage_in = usage_out = 0
        async with httpx.AsyncClient(timeout=10) as http:
            for _ in range(3):
                r = await http.post(f"{base}/v1/chat/completions", headers=auth,
                                    json={"model": FAKE_GPT, "messages": [{"role": "user", "content": "hi"}]})
                assert r.status_code == 200, r.text
                usage_in += r.json()["usage"]["prompt_tokens"]
                usage_out += r.json()["usage"]["completion_tokens"]
                got_ids.append(r.headers["x-interlock-request-id"])
            async with http.stream("POST", f"{base}/v1/messages", headers={"x-api-key": stack.virtual_key,
                                   "anthropic-version": "2023-06-01"},
                                   json={"model": FAKE_CLAUDE, "max_tokens": 50, "stream": True,
                                         "messages": [{"role": "user", "content": "hi"}]}) as r:
                assert r.status_code == 200
                got_ids.append(r.headers["x-interlock-request-id"])
                body = b"".join([c async for c in r.aiter_bytes()])
                assert b"message_stop" in body
            bad = await http.post(f"{base}/v1/chat/completions", headers={"authorization": "Bearer sk-wrong"},
                                  json={"model": FAKE_GPT, "messages": []})
            assert bad.status_code == 401
            missing = await http.post(f"{base}/v1/chat/completions", headers=auth,
                                      json={"model": "no-such-model", "messages": []})
            assert missing.status_code in (400, 404)
            await asyncio.sleep(0.4)  # the access log flushes every 0.25 s
            dp_text = (await http.get(f"{base}/metrics")).text
            cp = await http.get(f"http://127.0.0.1:{s.admin_port}/metrics")
    finally:
        await stack.stop()

    # data plane
    fams = parse(dp_text)
    assert value(fams, "interlock_requests", "interlock_requests_total", status_class="2xx") == 4
    assert value(fams, "interlock_requests", "interlock_requests_total", status_class="4xx") == 2
    assert value(fams, "interlock_requests", "interlock_requests_total", dialect="anthropic",
                 endpoint="/v1/messages", model=FAKE_CLAUDE, status_class="2xx") == 1
    assert value(fams, "interlock_request_duration_seconds", "interlock_request_duration_seconds_count") == 6
    # tokens: what the OpenAI client read in the usage field (plus the stream's, seen only by the gateway)
    assert value(fams, "gen_ai_client_token_usage", "gen_ai_client_token_usage_sum", gen_ai_token_type="input",
                 gen_ai_request_model=FAKE_GPT) == usage_in
    assert value(fams, "interlock_tokens", "interlock_tokens_total", model=FAKE_GPT, type="output") == usage_out
    assert value(fams, "gen_ai_client_operation_duration_seconds",
                 "gen_ai_client_operation_duration_seconds_count", gen_ai_operation_name="chat") == 4
    assert value(fams, "gen_ai_client_operation_time_to_first_chunk_seconds",
                 "gen_ai_client_operation_time_to_first_chunk_seconds_count", gen_ai_request_model=FAKE_CLAUDE) == 1
    assert value(fams, "interlock_upstream_attempts", "interlock_upstream_attempts_total", outcome="ok") == 4
    assert value(fams, "interlock_cost_usd", "interlock_cost_usd_total") > 0
    assert value(fams, "interlock_usage_events", "interlock_usage_events_total", outcome="emitted") == 6
    assert value(fams, "interlock_policy_version") >= 1
    assert 0 <= value(fams, "interlock_policy_snapshot_age_seconds") < 120
    assert "interlock_budget_control_plane_reachable" in fams  # the budget series are still there
    # bounded cardinality: no key id or secret in any label
    assert stack.virtual_key not in dp_text
    assert "key_id" not in dp_text

    # control plane
    assert cp.status_code == 200 and cp.headers["content-type"].startswith("text/plain")
    cfams = parse(cp.text)
    assert value(cfams, "interlock_cp_nodes", state="in_sync") == 1
    assert value(cfams, "interlock_cp_snapshot_publish_seconds", "interlock_cp_snapshot_publish_seconds_count") >= 1
    assert value(cfams, "interlock_cp_ledger_sync_seconds", "interlock_cp_ledger_sync_seconds_count") >= 0
    assert value(cfams, "interlock_cp_policy_version") >= 1

    # access log: one JSON line per proxied request, ids matching what clients got, no secret
    out = capfd.readouterr().out
    lines = [json.loads(line) for line in out.splitlines() if line.startswith('{"ts"')]
    access = [x for x in lines if x.get("msg") == "access"]
    assert len(access) == 6, out[-2000:]
    assert set(got_ids) <= {x["request_id"] for x in access}
    ok = [x for x in access if x["status"] == 200]
    assert {x["model"] for x in ok} == {FAKE_GPT, FAKE_CLAUDE} and all(x["attempts"] == 1 for x in ok)
    assert sum(x["input_tokens"] for x in ok if x["model"] == FAKE_GPT) == usage_in
    assert {x["status"] for x in access} >= {200, 401}
    assert stack.virtual_key not in out and "sk-wrong" not in out


async def test_ingest_metrics_are_prometheus_text() -> None:
    stats = IngestStats(consumed=12, inserted=10, dlq=2, lag={0: 3, 1: 0})
    stats.batch_seconds.observe((), 0.03)
    health = HealthServer(stats, "127.0.0.1", 0)
    await health.start()
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            text = (await http.get(f"http://127.0.0.1:{health.port}/metrics")).text
            stats_json = (await http.get(f"http://127.0.0.1:{health.port}/stats")).json()
    finally:
        await health.close()
    fams = parse(text)
    assert value(fams, "interlock_ingest_rows_inserted", "interlock_ingest_rows_inserted_total") == 10
    assert value(fams, "interlock_ingest_dead_letter", "interlock_ingest_dead_letter_total") == 2
    assert value(fams, "interlock_ingest_lag_records", partition="0") == 3
    assert value(fams, "interlock_ingest_batch_duration_seconds", "interlock_ingest_batch_duration_seconds_count") == 1
    assert stats_json["lag_total"] == 3  # the JSON view moved to /stats
