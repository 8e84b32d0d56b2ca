"""`interlock explain` through a real admin API: the route the data plane's code would pick, never the secret."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from click.testing import CliRunner, Result

from controlplane.admin_api import create_admin_app
from controlplane.explain_api import create_explain_router
from controlplane.policy.model import PolicyDocument
from controlplane.service_types import KeySpec
from interlock.cli.main import cli
from tests.controlplane.test_admin_api import TOKEN, MemoryPolicyService
from tests.dataplane.test_routing_rules import POLICY
from tests.fixtures.admin import admin_cli_env, serve_admin
from tests.fixtures.admin import cli_ok as ok


class Admin:
    def __init__(self, url: str, service: MemoryPolicyService) -> None:
        self.url, self.service = url, service

    def run(self, *args: str) -> Result:
        return CliRunner().invoke(cli, list(args), env=admin_cli_env(self.url, TOKEN, columns=160))


@pytest.fixture
def admin() -> Iterator[Admin]:
    import asyncio

    service = MemoryPolicyService()
    asyncio.run(service.apply(PolicyDocument.model_validate(POLICY)))
    app = create_admin_app(service, TOKEN.encode(), extra_routers=[create_explain_router(service, service.pepper)])
    with serve_admin(app) as url:
        yield Admin(url, service)


def key(admin: Admin, team: str) -> tuple[str, str]:
    import asyncio

    created = asyncio.run(admin.service.create_key(KeySpec(name="t", team=team)))
    return created.record.id, created.secret


def test_explain_json_shows_rule_deployments_constraints_and_fallbacks(admin: Admin) -> None:
    kid, secret = key(admin, "eu")
    r = ok(admin.run("explain", "--key", secret, "--model", "claude-x", "-o", "json"))
    assert secret not in r.stdout
    e = json.loads(r.stdout)
    assert e["key_id"] == kid and e["rule"] == "default" and e["constraints"] == "regions eu"
    (target, fallback) = e["targets"]
    assert target["model"] == "claude-x" and fallback["model"] == "gpt-x" and fallback["role"] == "fallback 1"
    by_dep = {d["deployment"]: d for t in e["targets"] for d in t["deployments"]}
    assert by_dep["claude-x/an-eu"]["share"] == 100.0 and not by_dep["claude-x/an-eu"]["excluded"]
    assert by_dep["claude-x/an-us"]["excluded"].startswith("outside team 'eu' limits")
    assert by_dep["gpt-x/oa-us"]["excluded"] and by_dep["gpt-x/oa-eu"]["share"] == 100.0
    assert e["fallback_on"] == ["429", "529", "5xx", "connect", "timeout"]
    assert by_dep["claude-x/an-eu"]["circuit"] == "unknown"


def test_explain_uses_header_tools_and_size_conditions(admin: Admin) -> None:
    kid, _ = key(admin, "open")
    r = ok(admin.run("explain", "--key", kid, "--model", "gpt-5", "--header", "X-Env=prod-eu", "--tools", "-o", "json"))
    e = json.loads(r.stdout)
    assert e["rule"] == "tools-header" and e["retries"] == 1
    assert [x["rule"] for x in e["rules"]] == ["big-prompts", "tools-header"]
    assert e["rules"][0]["reason"] == "input below min_input_tokens" and e["rules"][1]["matched"]
    assert [t["model"] for t in e["targets"]] == ["gpt-x", "gpt-mini"]
    shares = {d["deployment"]: d["share"] for d in e["targets"][0]["deployments"]}
    assert shares == {"gpt-x/oa-us": 75.0, "gpt-x/oa-eu": 25.0}
    r = ok(admin.run("explain", "--key", kid, "--model", "gpt-5", "--input-tokens", "50000", "-o", "json"))
    assert json.loads(r.stdout)["rule"] == "big-prompts"


def test_explain_table_and_errors(admin: Admin) -> None:
    kid, secret = key(admin, "anth")
    r = ok(admin.run("explain", "--key", secret, "--model", "claude-x", "--tag", "task=T-1"))
    assert "route default" in r.stdout and "providers an-eu, an-us" in r.stdout
    assert "excluded: outside team 'anth'" in r.stdout and secret not in r.stdout
    r = admin.run("explain", "--key", "vk_nope", "--model", "claude-x")
    assert r.exit_code != 0 and "no virtual key with id 'vk_nope'" in r.output
    r = admin.run("explain", "--key", kid, "--model", "claude-x", "--header", "novalue")
    assert r.exit_code != 0 and "name=value" in r.output
    r = admin.run("explain", "--key", kid, "--model", "unknown-model", "-o", "json")
    assert r.exit_code == 1 and json.loads(r.stdout)["refused"]["status"] == 404  # refused: not a success
    r = admin.run("explain", "--key", kid, "--model", "unknown-model")
    assert r.exit_code == 1 and "refused (404)" in r.stdout, r.output
