"""Policy that reads the node: credential references only under configured prefixes, no CRLF in provider
headers, and gRPC off loopback only with node authentication."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest
from pydantic import ValidationError

from controlplane.backend import start_backend
from controlplane.errors import PolicyInvalid
from controlplane.policy.model import Model, PolicyDocument, Provider
from controlplane.service import StorePolicyService
from controlplane.store.embedded import SqliteKV
from dataplane.snapshot.policy import env_and_file_credentials
from interlock_contracts.credential_refs import CredentialRules
from interlock_contracts.settings.common import SettingsError
from interlock_contracts.settings.controlplane import ControlPlaneSettings
from tests.fixtures.tls import Pki, make_pki

PEPPER = b"hostile-policy-pepper"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def doc(credential: str, headers: dict[str, str] | None = None) -> PolicyDocument:
    return PolicyDocument(providers=[Provider(name="p", kind="openai", base_url="https://api.example/v1",
                                              credential=credential, headers=headers or {})],
                          models=[Model(name="m", provider="p")])


@pytest.fixture
async def service(tmp_path: Path):  # type: ignore[no-untyped-def]
    kv = SqliteKV(tmp_path / "policy.db", "/interlock")
    rules = CredentialRules(dirs=(tmp_path / "creds",), env_prefixes=("INTERLOCK_CRED_",))
    yield StorePolicyService(kv, PEPPER, time.time, credential_rules=rules)
    await kv.close()


@pytest.mark.parametrize("ref", [
    "file:/etc/shadow", "file:/run/secrets/../../etc/passwd", "env:INTERLOCK_KEY_PEPPER", "env:HOME",
    "env:AWS_SECRET_ACCESS_KEY",
])
async def test_apply_refuses_references_outside_the_configured_prefixes(service, ref: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PolicyInvalid) as err:
        await service.apply(doc(ref))
    msg = str(err.value)
    assert f"provider 'p': credential {ref!r}" in msg
    assert "INTERLOCK_CREDENTIAL_DIRS" in msg or "INTERLOCK_CREDENTIAL_ENV_PREFIXES" in msg  # names the rule
    assert (await service.get_document())[0].providers == []  # nothing was applied


async def test_apply_accepts_references_under_the_prefixes(service, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert (await service.apply(doc("env:INTERLOCK_CRED_OPENAI"))).version > 0
    assert (await service.apply(doc(f"file:{tmp_path}/creds/openai"))).version > 0


def test_default_rules_never_allow_the_gateways_own_secrets() -> None:
    rules = CredentialRules()
    for ref in ("env:INTERLOCK_KEY_PEPPER", "env:INTERLOCK_NODE_TOKEN", "env:INTERLOCK_ADMIN_TOKEN",
                "file:/etc/interlock/../shadow", "file:/root/.ssh/id_rsa"):
        assert rules.problem(ref), ref
    for ref in ("env:OPENAI_API_KEY", "env:INTERLOCK_CRED_X", "file:/run/secrets/openai"):
        assert rules.problem(ref) is None, ref
    assert CredentialRules.from_env({"INTERLOCK_CREDENTIAL_ENV_PREFIXES": "INTERLOCK_CRED_, MYCO_",
                                     "INTERLOCK_CREDENTIAL_DIRS": "/srv/keys"}) == CredentialRules(
        dirs=(Path("/srv/keys"),), env_prefixes=("INTERLOCK_CRED_", "MYCO_"))


def test_the_node_refuses_to_resolve_what_the_rules_forbid_even_through_a_symlink(tmp_path: Path) -> None:
    allowed, outside = tmp_path / "creds", tmp_path / "private"
    allowed.mkdir()
    outside.mkdir()
    (allowed / "ok").write_text("sk-ok\n")
    (outside / "pepper").write_text("the-pepper")
    (allowed / "sneaky").symlink_to(outside / "pepper")
    resolve = env_and_file_credentials({"INTERLOCK_KEY_PEPPER": "the-pepper", "INTERLOCK_CRED_A": "sk-a"},
                                       CredentialRules(dirs=(allowed,), env_prefixes=("INTERLOCK_CRED_",)))
    assert resolve(f"file:{allowed}/ok") == "sk-ok" and resolve("env:INTERLOCK_CRED_A") == "sk-a"
    assert resolve(f"file:{outside}/pepper") is None
    assert resolve(f"file:{allowed}/sneaky") is None  # the symlink leads outside
    assert resolve("env:INTERLOCK_KEY_PEPPER") is None


@pytest.mark.parametrize("value", ["v\r\nx-injected: 1", "v\nx", "v\rx", "v\x00", "v\x1b[2J"])
def test_crlf_and_control_characters_in_provider_headers_are_refused(value: str) -> None:
    with pytest.raises(ValidationError, match="must not contain CR, LF or other control characters"):
        doc("env:K", {"x-org": value})
    with pytest.raises(ValidationError, match="header name"):
        doc("env:K", {"x org\r\n": "v"})
    assert doc("env:K", {"x-org": "a\tb c"}).providers[0].headers["x-org"] == "a\tb c"


def test_grpc_with_tls_but_no_node_auth_off_loopback_is_refused_unless_waived(tmp_path: Path, pki: Pki) -> None:
    base = ControlPlaneSettings(key_pepper=PEPPER, admin_token=b"a", grpc_host="0.0.0.0",
                                grpc_tls_cert=pki.server.cert, grpc_tls_key=pki.server.key)
    problem = base.grpc_security_problem()
    assert problem and "no node authentication" in problem and "INTERLOCK_NODE_TOKEN" in problem
    assert "INTERLOCK_GRPC_CLIENT_CA" in problem and "INTERLOCK_GRPC_ALLOW_UNAUTHENTICATED_NODES" in problem
    assert replace(base, node_token=b"t" * 32).grpc_security_problem() is None
    assert replace(base, grpc_client_ca=pki.ca).grpc_security_problem() is None
    assert replace(base, grpc_allow_unauthenticated_nodes=True).grpc_security_problem() is None
    assert replace(base, grpc_host="127.0.0.1").grpc_security_problem() is None  # loopback: only this machine
    env = {"INTERLOCK_KEY_PEPPER": "p", "INTERLOCK_ADMIN_TOKEN": "a", "INTERLOCK_GRPC_HOST": "0.0.0.0",
           "INTERLOCK_GRPC_TLS_CERT": str(pki.server.cert), "INTERLOCK_GRPC_TLS_KEY": str(pki.server.key)}
    with pytest.raises(SettingsError, match="no node authentication"):
        ControlPlaneSettings.from_env(env)
    assert ControlPlaneSettings.from_env({**env, "INTERLOCK_GRPC_ALLOW_UNAUTHENTICATED_NODES": "true"})


async def test_backend_does_not_start_with_tls_but_no_node_auth(tmp_path: Path, pki: Pki) -> None:
    settings = ControlPlaneSettings(key_pepper=PEPPER, admin_token=b"a", grpc_host="0.0.0.0", grpc_port=0,
                                    store=f"sqlite:///{tmp_path}/policy.db",
                                    grpc_tls_cert=pki.server.cert, grpc_tls_key=pki.server.key)
    with pytest.raises(SettingsError, match="no node authentication"):
        await start_backend(settings)
    assert not (tmp_path / "policy.db").exists()
