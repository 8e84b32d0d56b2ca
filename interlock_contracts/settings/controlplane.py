"""The control plane's settings (`interlock controlplane`): store, ports, TLS, admin credentials."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from interlock_contracts.credential_refs import CredentialRules
from interlock_contracts.settings.common import (
    PREFIX,
    SettingsError,
    _bool,
    _cert_key_problem,
    _get,
    _path,
    _secret,
    _unreadable,
    is_loopback_host,
)

ADMIN_ROLES = ("viewer", "operator", "admin")  # ordered: each role includes the ones before it


LEGACY_ADMIN_NAME = "admin-token"  # the identity INTERLOCK_ADMIN_TOKEN authenticates as (role admin)


@dataclass(frozen=True)
class AdminCredential:
    """One admin API identity. Only the token's SHA-256 is kept (tokens are 32+ random bytes, so a plain hash is
    enough and the plaintext never sits in memory longer than loading takes)."""

    name: str
    role: str  # one of ADMIN_ROLES
    token_sha256: bytes = field(repr=False)
    # Teams whose keys an operator may mint run keys from ("*" = any). Admins may act for every team.
    teams: tuple[str, ...] = ()


def admin_token_digest(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()


def _admin_credentials(env: Mapping[str, str], legacy_token: bytes | None) -> tuple[AdminCredential, ...]:
    """INTERLOCK_ADMIN_CREDENTIALS(_FILE): a YAML/JSON list of {name, role, token_sha256 | token_secret}.
    token_secret: NAME reads the token from INTERLOCK_NAME or INTERLOCK_NAME_FILE (e.g. a mounted Secret)."""
    var = f"{PREFIX}ADMIN_CREDENTIALS"
    creds = [AdminCredential(LEGACY_ADMIN_NAME, "admin", admin_token_digest(legacy_token))] if legacy_token else []
    raw = _secret(env, "ADMIN_CREDENTIALS")
    try:
        items = yaml.safe_load(raw) if raw else []
    except yaml.YAMLError as exc:
        raise SettingsError(f"{var} is not valid YAML/JSON: {str(exc).splitlines()[0]}") from None
    if not isinstance(items, list):
        raise SettingsError(f"{var} must be a list of {{name, role, token_sha256 | token_secret}}")
    for i, item in enumerate(items):
        where = f"{var}[{i}]"
        if not isinstance(item, dict) or set(item) - {"name", "role", "token_sha256", "token_secret", "teams"}:
            raise SettingsError(f"{where} must be a mapping with keys name, role, token_sha256 or token_secret, "
                                f"and (operators) teams")
        teams = item.get("teams", [])
        teams = [teams] if isinstance(teams, str) else teams
        if not isinstance(teams, list) or not all(isinstance(t, str) and t for t in teams):
            raise SettingsError(f"{where}.teams must be a list of team ids (or \"*\" for every team)")
        name, role = str(item.get("name") or "").strip(), str(item.get("role") or "")
        if not name or not name.isprintable() or len(name) > 64:
            raise SettingsError(f"{where}.name must be 1-64 printable characters")
        if role not in ADMIN_ROLES:
            raise SettingsError(f"{where}.role must be one of {', '.join(ADMIN_ROLES)}, got {role!r}")
        if ("token_sha256" in item) == ("token_secret" in item):
            raise SettingsError(f"{where} needs exactly one of token_sha256 (hex) or token_secret (a variable name)")
        if "token_secret" in item:
            ref = str(item["token_secret"]).removeprefix(PREFIX)
            token = _secret(env, ref)
            if not token:
                raise SettingsError(f"{where}.token_secret: set {PREFIX}{ref} or {PREFIX}{ref}_FILE")
            digest = admin_token_digest(token)
        else:
            try:
                digest = bytes.fromhex(str(item["token_sha256"]))
            except ValueError:
                digest = b""
            if len(digest) != 32:
                raise SettingsError(f"{where}.token_sha256 must be 64 hex digits: printf %s \"$TOKEN\" | sha256sum")
        if any(c.token_sha256 == digest for c in creds):
            raise SettingsError(f"{where} ({name}): this token is already used by another admin identity")
        creds.append(AdminCredential(name, role, digest, tuple(teams)))
    return tuple(creds)


@dataclass(frozen=True)
class ControlPlaneSettings:
    key_pepper: bytes = field(repr=False)
    admin_token: bytes = field(repr=False)
    store: str = "etcd://127.0.0.1:2379"  # or "sqlite:///path/policy.db" (embedded)
    etcd_prefix: str = "/interlock"
    admin_host: str = "127.0.0.1"
    admin_port: int = 8081
    grpc_host: str = "127.0.0.1"
    grpc_port: int = 50051
    heartbeat_s: float = 5.0
    budget_lease_ttl_s: float = 20.0  # a node's budget leases expire this long after its last Sync
    # An expired lease stays counted as spent this long awaiting a late report (None = 3 x TTL); docs/budget-faults.md
    budget_reconcile_s: float | None = None
    run_key_prune_after_s: float = 86_400.0  # ended per-run keys are deleted this long after (0 = keep)
    # Who may use the gRPC port (Subscribe + BudgetService), see controlplane/grpc_auth.py.
    grpc_tls_cert: Path | None = None  # server certificate chain (PEM); with grpc_tls_key enables TLS
    grpc_tls_key: Path | None = None
    grpc_client_ca: Path | None = None  # require node client certificates signed by this CA (mutual TLS)
    node_token: bytes | None = field(default=None, repr=False)  # nodes must present it as call metadata
    grpc_allow_insecure: bool = False  # allow plaintext, unauthenticated gRPC on a non-loopback address
    # etcd transport security and auth (controlplane/store/etcd.py)
    etcd_ca_cert: Path | None = None
    etcd_cert: Path | None = None  # client certificate for etcd --client-cert-auth
    etcd_key: Path | None = None
    etcd_username: str = ""
    etcd_password: bytes | None = field(default=None, repr=False)
    # Admin API identities (controlplane/admin_auth.py); INTERLOCK_ADMIN_TOKEN is the first, named admin-token.
    admin_credentials: tuple[AdminCredential, ...] = ()
    credentials: CredentialRules = field(default_factory=CredentialRules)  # credential refs `apply` accepts
    grpc_allow_unauthenticated_nodes: bool = False  # TLS without node token/client CA off loopback (issue 10)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ControlPlaneSettings:
        env = os.environ if env is None else env
        pepper = _secret(env, "KEY_PEPPER")
        token = _secret(env, "ADMIN_TOKEN")
        if not pepper:
            raise SettingsError(f"{PREFIX}KEY_PEPPER (or {PREFIX}KEY_PEPPER_FILE) must be set: 32+ random bytes, same on every node")
        admin_credentials = _admin_credentials(env, token)
        if not admin_credentials:
            raise SettingsError(f"{PREFIX}ADMIN_TOKEN (or {PREFIX}ADMIN_TOKEN_FILE) or {PREFIX}ADMIN_CREDENTIALS(_FILE) "
                                "must be set to protect the admin API")
        settings = cls(
            key_pepper=pepper,
            admin_token=token or b"",
            admin_credentials=admin_credentials,
            store=_get(env, "STORE", cls.store, str),
            etcd_prefix=_get(env, "ETCD_PREFIX", cls.etcd_prefix, str),
            admin_host=_get(env, "ADMIN_HOST", cls.admin_host, str),
            admin_port=_get(env, "ADMIN_PORT", cls.admin_port, int),
            grpc_host=_get(env, "GRPC_HOST", cls.grpc_host, str),
            grpc_port=_get(env, "GRPC_PORT", cls.grpc_port, int),
            heartbeat_s=_get(env, "HEARTBEAT_S", cls.heartbeat_s, float),
            budget_lease_ttl_s=_get(env, "BUDGET_LEASE_TTL_S", cls.budget_lease_ttl_s, float),
            budget_reconcile_s=_get(env, "BUDGET_RECONCILE_S", None, float),
            run_key_prune_after_s=_get(env, "RUN_KEY_PRUNE_AFTER_S", cls.run_key_prune_after_s, float),
            grpc_tls_cert=_get(env, "GRPC_TLS_CERT", None, _path),
            grpc_tls_key=_get(env, "GRPC_TLS_KEY", None, _path),
            grpc_client_ca=_get(env, "GRPC_CLIENT_CA", None, _path),
            node_token=_secret(env, "NODE_TOKEN"),
            grpc_allow_insecure=_get(env, "GRPC_ALLOW_INSECURE", cls.grpc_allow_insecure, _bool),
            etcd_ca_cert=_get(env, "ETCD_CA_CERT", None, _path),
            etcd_cert=_get(env, "ETCD_CERT", None, _path),
            etcd_key=_get(env, "ETCD_KEY", None, _path),
            etcd_username=_get(env, "ETCD_USERNAME", cls.etcd_username, str),
            etcd_password=_secret(env, "ETCD_PASSWORD"),
            credentials=CredentialRules.from_env(env),
            grpc_allow_unauthenticated_nodes=_get(env, "GRPC_ALLOW_UNAUTHENTICATED_NODES",
                                                  cls.grpc_allow_unauthenticated_nodes, _bool),
        )
        if problem := settings.grpc_security_problem():
            raise SettingsError(problem)
        return settings

    def grpc_security_problem(self) -> str | None:
        """Why this gRPC configuration must not start, or None. Plaintext without a token is the dev default, and
        safe only on loopback: anyone who reaches the port could read every policy and drain budgets."""
        if problem := _cert_key_problem("GRPC_TLS", self.grpc_tls_cert, self.grpc_tls_key, "server certificate and its key"):
            return problem
        if self.grpc_client_ca is not None and self.grpc_tls_cert is None:
            return (f"{PREFIX}GRPC_CLIENT_CA (mutual TLS) needs server TLS too: "
                    f"set {PREFIX}GRPC_TLS_CERT and {PREFIX}GRPC_TLS_KEY")
        if self.grpc_tls_cert is None and not is_loopback_host(self.grpc_host) and not self.grpc_allow_insecure:
            return (f"refusing plaintext gRPC on {self.grpc_host or '0.0.0.0'}:{self.grpc_port}, which is reachable "
                    f"from the network: set {PREFIX}GRPC_TLS_CERT and {PREFIX}GRPC_TLS_KEY (and {PREFIX}NODE_TOKEN "
                    f"or {PREFIX}GRPC_CLIENT_CA to authenticate nodes), or {PREFIX}GRPC_ALLOW_INSECURE=true if "
                    f"something else (a service mesh) encrypts and authenticates this traffic")
        if (self.grpc_tls_cert is not None and not is_loopback_host(self.grpc_host) and not self.node_token
                and self.grpc_client_ca is None and not self.grpc_allow_unauthenticated_nodes):
            # TLS hides the traffic but anyone who reaches the port could still Subscribe (key HMACs, provider
            # headers, credential refs) and call BudgetService.Sync.
            return (f"gRPC on {self.grpc_host or '0.0.0.0'}:{self.grpc_port} has TLS but no node authentication: "
                    f"set {PREFIX}NODE_TOKEN (or {PREFIX}NODE_TOKEN_FILE) or {PREFIX}GRPC_CLIENT_CA, or "
                    f"{PREFIX}GRPC_ALLOW_UNAUTHENTICATED_NODES=true if something else authenticates the nodes")
        if problem := _cert_key_problem("ETCD", self.etcd_cert, self.etcd_key, "etcd client certificate and its key"):
            return problem
        if bool(self.etcd_username) != bool(self.etcd_password):
            return f"set both {PREFIX}ETCD_USERNAME and {PREFIX}ETCD_PASSWORD (or {PREFIX}ETCD_PASSWORD_FILE)"
        return _unreadable({"GRPC_TLS_CERT": self.grpc_tls_cert, "GRPC_TLS_KEY": self.grpc_tls_key,
                            "GRPC_CLIENT_CA": self.grpc_client_ca, "ETCD_CA_CERT": self.etcd_ca_cert,
                            "ETCD_CERT": self.etcd_cert, "ETCD_KEY": self.etcd_key})
