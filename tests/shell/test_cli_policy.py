"""The policy CLI against a real uvicorn server running the admin API on a loopback port."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from rich.console import Console

from controlplane.admin_api import create_admin_app
from controlplane.admin_schemas import ChangeOut, KeyOut
from controlplane.service_types import NodeStatus
from interlock.cli import policy_cmds, render
from interlock.cli.main import cli
from tests.controlplane.test_admin_api import TOKEN, MemoryPolicyService
from tests.fixtures.admin import admin_cli_env, serve_admin
from tests.fixtures.admin import cli_ok as _ok
from tests.fixtures.ports import free_port as _free_port

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "policy.yaml"


class Admin:
    """A running admin API and a CLI runner pointed at it."""

    def __init__(self, url: str, service: MemoryPolicyService) -> None:
        self.url, self.service = url, service

    def run(self, *args: str, token: str | None = TOKEN, url: str | None = None, stdin: str | None = None) -> Result:
        env = admin_cli_env(url or self.url, token, columns=100)  # tables must read well at 100 columns
        return CliRunner().invoke(cli, list(args), env=env, input=stdin)


@pytest.fixture
def admin() -> Iterator[Admin]:
    service = MemoryPolicyService()
    with serve_admin(create_admin_app(service, TOKEN.encode())) as url:
        yield Admin(url, service)


def test_apply_shows_diff_then_no_changes_then_updates(admin: Admin, tmp_path: Path) -> None:
    first = _ok(admin.run("apply", "-f", str(EXAMPLE))).stdout
    for line in ("providers", "+ openai", "+ vllm-local", "models", "+ claude-sonnet-4", "+ smart", "+ payments",
                 "+ carol", "+ checkout", "applied: 19 to create, 0 to update, 0 to delete", "policy version now"):
        assert line in first

    assert _ok(admin.run("apply", "-f", str(EXAMPLE))).stdout.startswith("no changes (policy version")

    text = EXAMPLE.read_text()
    edited = text.replace("input: 2.00, output: 8.00", "input: 2.50, output: 8.00").replace(
        "  - id: bob\n    team: platform\n    name: Bob Okafor\n", "")
    (tmp_path / "p.yaml").write_text(edited)
    out = _ok(admin.run("apply", "-f", str(tmp_path / "p.yaml"))).stdout
    assert "~ gpt-4.1\n" in out and "price.input: 2 → 2.5" in out and "- bob" in out
    assert "0 to create, 1 to update, 1 to delete" in out


def test_dry_run_changes_nothing(admin: Admin) -> None:
    out = _ok(admin.run("apply", "-f", str(EXAMPLE), "--dry-run")).stdout
    assert "+ openai" in out and "dry run: nothing applied (policy version 1)" in out
    assert admin.service.version == 1 and admin.service.doc.models == []


def test_interactive_apply_asks_first(admin: Admin, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(policy_cmds, "_stdin_is_tty", lambda: True)
    declined = admin.run("apply", "-f", str(EXAMPLE), stdin="n\n")
    assert declined.exit_code == 1 and "+ openai" in declined.stdout and "Apply these changes?" in declined.output
    assert admin.service.doc.models == []
    accepted = _ok(admin.run("apply", "-f", str(EXAMPLE), stdin="y\n")).stdout
    assert "applied: 19 to create" in accepted and len(admin.service.doc.models) == 5
    assert _ok(admin.run("apply", "-f", str(EXAMPLE))).stdout.startswith("no changes")


@pytest.mark.parametrize(("content", "expected"), [
    ("models:\n  - name: x\n    provider: openai\n    price: {input: -1}\n",
     "models[0] (x).price.input: price must be a finite, non-negative number"),
    ("providers:\n  - name: openai\n    base_url: https://a\n    credential: sk-abc\n",
     "providers[0] (openai).credential: credential must be a reference"),
    ("teams:\n  - id: platform\n    allowed: [fast]\n", "teams[0] (platform).allowed: unknown field (allowed: id, name"),
    ("modles: []\n", "modles: unknown field (allowed: providers, models"),
    ("models: [\n  - name: x\n", "invalid YAML at line"),
    ("", "is empty; refusing to apply"),
    ("- a\n", "the top level must be a mapping"),
])
def test_bad_policy_files_point_at_the_field(admin: Admin, tmp_path: Path, content: str, expected: str) -> None:
    (tmp_path / "p.yaml").write_text(content)
    result = admin.run("apply", "-f", str(tmp_path / "p.yaml"))
    assert result.exit_code != 0 and expected in result.stderr, result.stderr
    assert admin.service.version == 1


def test_policy_errors_from_the_server_are_listed(admin: Admin, tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text("models:\n  - {name: m, provider: nope}\naliases:\n  - {name: a, target: zz}\n")
    result = admin.run("apply", "-f", str(tmp_path / "p.yaml"))
    assert result.exit_code == 1
    assert "rejected, nothing was changed: 2 problems" in result.stderr
    assert "  - model 'm': provider 'nope' is not defined" in result.stderr
    assert "  - alias 'a' points to 'zz'" in result.stderr


def test_keys_create_list_revoke(admin: Admin) -> None:
    _ok(admin.run("apply", "-f", str(EXAMPLE)))
    created = _ok(admin.run("keys", "create", "--name", "ci", "--team", "platform", "--user", "alice",
                            "--models", "fast, smart", "--expires", "30d", "--tag", "env=ci", "--tag", "tier=1"))
    secret = created.stdout.strip().splitlines()[-1]
    assert secret.startswith("sk-il-") and "will not be shown again" in created.stderr
    record = next(iter(admin.service.keys.values()))
    assert record.allowed_models == ["fast", "smart"] and record.default_tags == {"env": "ci", "tier": "1"}
    assert 29 * 86400_000 < record.expires_at_unix_ms - time.time() * 1000 < 31 * 86400_000

    as_json = json.loads(_ok(admin.run("keys", "create", "--name", "bot", "--team", "payments", "-o", "json")).stdout)
    assert as_json["secret"].startswith("sk-il-") and as_json["team"] == "payments"

    table = _ok(admin.run("keys", "list")).stdout
    assert record.id in table and "platform/alice" in table and "30d left" in table and secret not in table
    listed = json.loads(_ok(admin.run("keys", "list", "-o", "json")).stdout)
    assert {k["name"] for k in listed} == {"ci", "bot"}
    assert all("secret" not in k and "key_hash" not in k for k in listed)

    assert f"revoked {record.id} (ci)" in _ok(admin.run("keys", "revoke", record.id)).stdout
    assert "revoked" in _ok(admin.run("keys", "list")).stdout
    assert admin.service.keys[record.id].revoked


def test_key_errors_say_what_to_do(admin: Admin) -> None:
    missing = admin.run("keys", "revoke", "vk_nope")
    assert missing.exit_code == 1 and "does not exist" in missing.stderr and "interlock keys list" in missing.stderr
    secret = admin.run("keys", "revoke", "sk-il-abcdef")
    assert secret.exit_code == 2 and "pass its id" in secret.stderr
    for args, msg in ((("--expires", "2001-01-01"), "in the past"), (("--expires", "soon"), "30d"),
                      (("--tag", "novalue"), "key=value")):
        bad = admin.run("keys", "create", "--name", "x", *args)
        assert bad.exit_code == 2 and msg in bad.stderr
    orphan = admin.run("keys", "create", "--name", "x", "--team", "ghosts")
    assert orphan.exit_code == 1 and "ghosts" in orphan.stderr


def test_models_list_and_status(admin: Admin) -> None:
    _ok(admin.run("apply", "-f", str(EXAMPLE)))
    table = _ok(admin.run("models", "list")).stdout
    for cell in ("claude-sonnet-4", "anthropic/claude-sonnet-4-20250514", "$3.00", "$15.00", "$0.30",
                 "→ claude-sonnet-4 (anthropic)", "vllm-local/Qwen/Qwen2.5-Coder-32B-Instruct", "$0.05"):
        assert cell in table
    names = {m["name"] for m in json.loads(_ok(admin.run("models", "list", "-o", "json")).stdout)}
    assert {"gpt-4.1", "fast", "default"} <= names

    assert "no data-plane nodes have connected yet" in _ok(admin.run("status")).stdout
    v, now = admin.service.version, int(time.time() * 1000)
    admin.service.nodes = [
        NodeStatus("dp-a", v, "", True, now - 3000, address="10.0.0.7:8080"),
        NodeStatus("dp-b", v - 1, "", False, now - 120_000, rejected_version=v, reject_reason="bad provider kind"),
    ]
    out = _ok(admin.run("status")).stdout
    assert f"policy version {v}" in out and "5 providers" not in out and "3 providers, 5 models, 4 aliases" in out
    assert "1 of 2 nodes in sync" in out and "dp-a" in out and "✓" in out and "3s ago" in out
    assert "rejected" in out and "2m ago" in out and f"v{v}: bad provider kind" in out
    status = json.loads(_ok(admin.run("status", "-o", "json")).stdout)
    assert status["version"] == v and len(status["nodes"]) == 2 and status["snapshot"]["counts"]["models"] == 5


def test_unreachable_admin_api_says_what_to_run() -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    result = CliRunner().invoke(cli, ["keys", "list"], env={"INTERLOCK_ADMIN_URL": url, "INTERLOCK_ADMIN_TOKEN": "t"})
    assert result.exit_code == 1
    assert f"cannot reach the admin API at {url}" in result.stderr
    assert "interlock controlplane" in result.stderr and "INTERLOCK_ADMIN_URL" in result.stderr


def test_token_problems_say_which_variable_to_set(admin: Admin) -> None:
    wrong = admin.run("status", token="not-the-token")
    assert wrong.exit_code == 1 and "rejected the admin token: set INTERLOCK_ADMIN_TOKEN" in wrong.stderr
    missing = admin.run("models", "list", token=None)
    assert missing.exit_code == 1 and "no admin token given: set INTERLOCK_ADMIN_TOKEN" in missing.stderr


def test_flags_override_the_environment(admin: Admin) -> None:
    elsewhere = f"http://127.0.0.1:{_free_port()}"
    result = admin.run("keys", "list", "--admin-url", admin.url, "--admin-token", TOKEN, url=elsewhere, token="bad")
    assert "no virtual keys yet" in _ok(result).stdout


def test_keys_table_fits_100_columns() -> None:
    now = int(time.time() * 1000)
    keys = [KeyOut(id="vk_0123456789abcdef", name="alice-laptop-long-name", hint="sk-il-…Wx9Z", team="payments",
                   user="carol", project="checkout", allowed_models=["smart", "fast", "claude-sonnet-4"],
                   expires_at_unix_ms=now + 86400_000 * 30, revoked=False, revoked_at_unix_ms=0,
                   created_at_unix_ms=now - 5000, default_tags={}, parent="")]
    console = Console(width=100, record=True, file=io.StringIO())
    console.print(render.keys_table(keys, now))
    text = console.export_text()
    assert "vk_0123456789abcdef" in text and all(len(line) <= 100 for line in text.splitlines())


def test_diff_masks_secret_headers_but_still_reports_their_change() -> None:
    before = {"name": "p", "headers": {"Authorization": "Bearer old-secret", "X-Org": "acme"}}
    after = {"name": "p", "headers": {"Authorization": "Bearer new-secret", "X-Org": "acme2"}}
    console = Console(width=100, record=True, file=io.StringIO())
    console.print(render.diff([ChangeOut(section="providers", name="p", action="update", before=before, after=after)]))
    text = console.export_text()
    assert "headers.Authorization: ••• → •••" in text and "headers.X-Org: acme → acme2" in text
    assert "secret" not in text


def test_user_text_is_printed_literally(admin: Admin) -> None:
    _ok(admin.run("apply", "-f", str(EXAMPLE)))
    weird = "[/bold] [red]ci[/red]"
    created = _ok(admin.run("keys", "create", "--name", weird, "--team", "platform"))
    assert weird in created.stdout
    assert weird in _ok(admin.run("keys", "list")).stdout



def test_keys_revoke_reads_ids_from_a_pipe(admin: Admin) -> None:
    """`interlock keys list -o csv | grep ci- | interlock keys revoke -`: the README's pipe, as written."""
    _ok(admin.run("apply", "-f", str(EXAMPLE)))
    for name in ("ci-a", "ci-b", "laptop"):
        _ok(admin.run("keys", "create", "--name", name, "--team", "platform"))
    listed = _ok(admin.run("keys", "list", "-o", "csv")).stdout
    ci_lines = [line for line in listed.splitlines() if "ci-" in line]
    ids = {k.name: k.id for k in admin.service.keys.values()}
    out = _ok(admin.run("keys", "revoke", "-", stdin="\n".join(ci_lines) + "\n")).stdout
    assert f"revoked {ids['ci-a']} (ci-a)" in out and f"revoked {ids['ci-b']} (ci-b)" in out
    assert {k.name for k in admin.service.keys.values() if k.revoked} == {"ci-a", "ci-b"}
    # the whole CSV, header included, and bare ids (jq -r '.[].id'); an id given twice is revoked once
    again = _ok(admin.run("keys", "revoke", "-", ids["laptop"], stdin=listed + f"\n{ids['laptop']}\n")).stdout
    assert again.count(f"revoked {ids['laptop']}") == 1 and all(k.revoked for k in admin.service.keys.values())
    # a secret or a non-id line anywhere: nothing is revoked, exit 2, and the line is named
    _ok(admin.run("keys", "create", "--name", "kept", "--team", "platform"))
    kept = next(k for k in admin.service.keys.values() if k.name == "kept")
    for bad, msg in ((f"{kept.id}\nsk-il-abcdef\n", "stdin line 2: that looks like a key's secret"),
                     (f"{kept.id}\nNAME  KEY\n", "stdin line 2: 'NAME  KEY' is not a key id"), ("\n\n", "no key ids")):
        result = admin.run("keys", "revoke", "-", stdin=bad)
        assert result.exit_code == 2 and msg in result.stderr, result.stderr
    assert not admin.service.keys[kept.id].revoked
    # an unknown id: the others are still revoked, exit 1 names it
    partial = admin.run("keys", "revoke", "-", stdin=f"vk_nope\n{kept.id}\n")
    assert partial.exit_code == 1 and "1 of 2 keys not revoked: vk_nope" in partial.stderr
    assert admin.service.keys[kept.id].revoked
