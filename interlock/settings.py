"""Typed, frozen settings for every service, read from the environment in one place.

Secrets (admin token, key pepper) can come from `*_FILE` variables and are
excluded from repr so they never reach logs.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import yaml

from dataplane.http.limits import HttpLimits
from interlock.credential_refs import CredentialRules

T = TypeVar("T")
PREFIX = "INTERLOCK_"


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable to fix."""


def _get(env: Mapping[str, str], name: str, default: T, cast: Callable[[str], T]) -> T:
    raw = env.get(PREFIX + name)
    if raw is None or raw == "":
        return default
    try:
        return cast(raw)
    except ValueError as exc:
        raise SettingsError(f"{PREFIX}{name}={raw!r} is not valid: {exc}") from exc


def _secret(env: Mapping[str, str], name: str) -> bytes | None:
    """A secret from INTERLOCK_<NAME> or the file named by INTERLOCK_<NAME>_FILE."""
    if path := env.get(f"{PREFIX}{name}_FILE"):
        try:
            return Path(path).read_bytes().strip()
        except OSError as exc:
            raise SettingsError(f"{PREFIX}{name}_FILE={path!r} cannot be read: {exc.strerror}") from exc
    value = env.get(PREFIX + name)
    return value.encode() if value else None


def _bool(raw: str) -> bool:
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected true/false")


def _fraction(raw: str) -> float:
    v = float(raw)
    if not 0.0 <= v <= 1.0:
        raise ValueError("must be between 0 and 1 (e.g. 0.01 for 1% of requests)")
    return v


def _access_log_format(raw: str) -> str:
    v = raw.strip().lower()
    if v in ("json", "logfmt", "off"):
        return v
    if v in ("0", "false", "no", "none", ""):
        return "off"
    raise ValueError("must be json, logfmt or off")


def _path(raw: str) -> Path:
    return Path(raw)


def is_loopback_host(host: str) -> bool:
    """True for addresses only this machine can reach ("localhost", 127.0.0.0/8, ::1)."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a DNS name (or "" / 0.0.0.0 = every interface): assume reachable from the network


def _unreadable(files: Mapping[str, Path | None]) -> str | None:
    """A message for the first configured file (setting name -> path) that is not a readable file."""
    for name, path in files.items():
        if path is not None and not (path.is_file() and os.access(path, os.R_OK)):
            return f"{PREFIX}{name}={str(path)!r} is not a readable file"
    return None


def _cert_key_problem(var_prefix: str, cert: Path | None, key: Path | None, what: str) -> str | None:
    """A certificate is usable only with its key: INTERLOCK_<var_prefix>_CERT and _KEY are set together or not at all."""
    if (cert is None) != (key is None):
        return f"set both {PREFIX}{var_prefix}_CERT and {PREFIX}{var_prefix}_KEY ({what})"
    return None


def target_host(target: str) -> str:
    """The host of a gRPC target "host:port", "dns:///host:port" or "[v6]:port"."""
    rest = target.split("///", 1)[-1]
    host, sep, port = rest.rpartition(":")
    return host if sep and port.isdigit() else rest


@dataclass(frozen=True)
class DataPlaneSettings:
    node_id: str
    key_pepper: bytes = field(repr=False)
    host: str = "127.0.0.1"
    port: int = 8080
    control_plane: str = "127.0.0.1:50051"  # gRPC target; "" = run from the disk snapshot only
    state_dir: Path = Path(".interlock/dataplane")
    max_body_bytes: int = 32 * 1024 * 1024
    upstream_connect_timeout_s: float = 10.0
    upstream_pool_size: int = 512
    upstream_client: str = "native"  # "native" (httptools, chosen by benchmark) | "aiohttp" (fallback)
    usage_sink: str = "none"  # "none" | "clickhouse" (embedded/dev) | "kafka" (production)
    clickhouse_dsn: str = ""
    kafka_bootstrap: str = ""  # required when usage_sink == "kafka"
    kafka_topic: str = "interlock.usage.v1"
    spool_dir: Path | None = None  # default: <state_dir>/usage-spool
    spool_max_bytes: int = 1 << 30
    tune_gc: bool = True  # see dataplane/gc_tuning.py for the measurement behind it
    drain_timeout_s: float = 30.0  # on shutdown, how long in-flight requests may take to finish
    budget_tick_s: float = 0.5  # budget lease sync period (renew, report spend, return unused)
    budget_wait_s: float = 2.0  # how long a request may wait for a lease refill before it is refused
    credential_refresh_s: float = 30.0  # re-read provider credential refs (rotated tokens); 0 = only on policy change
    # Channel to the control plane (see dataplane/control_channel.py): TLS when a CA is given or control_plane_tls,
    # a client cert for mutual TLS, and a bootstrap token sent as call metadata (never logged).
    control_plane_tls: bool = False  # TLS with the system's root CAs
    control_plane_ca: Path | None = None  # CA that signed the control plane's certificate (implies TLS)
    control_plane_cert: Path | None = None  # this node's client certificate (mutual TLS)
    control_plane_key: Path | None = None
    node_token: bytes | None = field(default=None, repr=False)
    metrics: bool = True  # GET /metrics request series (dataplane/observe/); budget series are always there
    access_log: str = "json"  # "json" | "logfmt" | "off": one line per request on stdout (dataplane/observe/)
    spool_alert_bytes: int = 100 << 20  # usage spool above this: a usage_spool_high alert (0 = never)
    trace_sample: float = 0.0  # OpenTelemetry head sampling, 0..1; 0 = tracing off (dataplane/observe/tracing.py)
    otlp_endpoint: str = ""  # OTLP/gRPC collector, e.g. http://otel-collector:4317 ("" = the SDK's default)
    http: HttpLimits = field(default_factory=HttpLimits)  # client connection limits (INTERLOCK_HTTP_*)
    credentials: CredentialRules = field(default_factory=CredentialRules)  # allowed credential refs

    @property
    def snapshot_path(self) -> Path:
        return self.state_dir / "snapshot.pb"

    @property
    def usage_spool_dir(self) -> Path:
        return self.spool_dir or self.state_dir / "usage-spool"

    @property
    def control_plane_uses_tls(self) -> bool:
        return self.control_plane_tls or self.control_plane_ca is not None or self.control_plane_cert is not None

    def control_channel_problem(self) -> str | None:
        """Why the channel to the control plane cannot be built as configured, or None."""
        if problem := _cert_key_problem("CONTROL_PLANE", self.control_plane_cert, self.control_plane_key,
                                        "client certificate and its key"):
            return problem
        if (self.node_token and self.control_plane and not self.control_plane_uses_tls
                and not self.control_plane.startswith("unix:") and not is_loopback_host(target_host(self.control_plane))):
            # A bearer token in cleartext would let anyone on the path impersonate this node.
            return (f"{PREFIX}NODE_TOKEN is only sent over TLS or to a loopback control plane: set "
                    f"{PREFIX}CONTROL_PLANE_CA (or {PREFIX}CONTROL_PLANE_TLS=true) for {self.control_plane}")
        return _unreadable({"CONTROL_PLANE_CA": self.control_plane_ca, "CONTROL_PLANE_CERT": self.control_plane_cert,
                            "CONTROL_PLANE_KEY": self.control_plane_key})

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DataPlaneSettings:
        env = os.environ if env is None else env
        pepper = _secret(env, "KEY_PEPPER")
        if not pepper:
            raise SettingsError(f"{PREFIX}KEY_PEPPER (or {PREFIX}KEY_PEPPER_FILE) must be set to the control plane's key pepper")
        settings = cls(
            node_id=_get(env, "NODE_ID", socket.gethostname(), str),
            key_pepper=pepper,
            host=_get(env, "DP_HOST", cls.host, str),
            port=_get(env, "DP_PORT", cls.port, int),
            # an explicitly empty value means "no control plane: serve from the disk snapshot only"
            control_plane=env.get(PREFIX + "CONTROL_PLANE", cls.control_plane),
            state_dir=_get(env, "DP_STATE_DIR", cls.state_dir, Path),
            max_body_bytes=_get(env, "MAX_BODY_BYTES", cls.max_body_bytes, int),
            upstream_connect_timeout_s=_get(env, "UPSTREAM_CONNECT_TIMEOUT_S", cls.upstream_connect_timeout_s, float),
            upstream_pool_size=_get(env, "UPSTREAM_POOL_SIZE", cls.upstream_pool_size, int),
            upstream_client=_get(env, "UPSTREAM_CLIENT", cls.upstream_client, str),
            usage_sink=_get(env, "USAGE_SINK", cls.usage_sink, str),
            clickhouse_dsn=_get(env, "CLICKHOUSE_DSN", cls.clickhouse_dsn, str),
            kafka_bootstrap=_get(env, "KAFKA_BOOTSTRAP", cls.kafka_bootstrap, str),
            kafka_topic=_get(env, "KAFKA_TOPIC", cls.kafka_topic, str),
            spool_dir=_get(env, "SPOOL_DIR", None, Path),
            spool_max_bytes=_get(env, "SPOOL_MAX_BYTES", cls.spool_max_bytes, int),
            tune_gc=_get(env, "TUNE_GC", cls.tune_gc, _bool),
            drain_timeout_s=_get(env, "DRAIN_TIMEOUT_S", cls.drain_timeout_s, float),
            budget_tick_s=_get(env, "BUDGET_TICK_S", cls.budget_tick_s, float),
            budget_wait_s=_get(env, "BUDGET_WAIT_S", cls.budget_wait_s, float),
            credential_refresh_s=_get(env, "CREDENTIAL_REFRESH_S", cls.credential_refresh_s, float),
            control_plane_tls=_get(env, "CONTROL_PLANE_TLS", cls.control_plane_tls, _bool),
            control_plane_ca=_get(env, "CONTROL_PLANE_CA", None, _path),
            control_plane_cert=_get(env, "CONTROL_PLANE_CERT", None, _path),
            control_plane_key=_get(env, "CONTROL_PLANE_KEY", None, _path),
            node_token=_secret(env, "NODE_TOKEN"),
            metrics=_get(env, "METRICS", cls.metrics, _bool),
            access_log=_get(env, "ACCESS_LOG", cls.access_log, _access_log_format),
            trace_sample=_get(env, "TRACE_SAMPLE", cls.trace_sample, _fraction),
            spool_alert_bytes=_get(env, "SPOOL_ALERT_BYTES", cls.spool_alert_bytes, int),
            otlp_endpoint=_get(env, "OTLP_ENDPOINT", cls.otlp_endpoint, str),
            http=_http_limits(env),
            credentials=CredentialRules.from_env(env),
        )
        if problem := settings.control_channel_problem() or settings.http.problem():
            raise SettingsError(problem)
        return settings


def _http_limits(env: Mapping[str, str]) -> HttpLimits:
    d = HttpLimits()
    return HttpLimits(**{name: _get(env, f"HTTP_{name.upper()}", getattr(d, name), type(getattr(d, name)))
                         for name in d.__dataclass_fields__})


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


@dataclass(frozen=True)
class CliSettings:
    admin_url: str = "http://127.0.0.1:8081"
    admin_token: str = field(default="", repr=False)
    actor: str = ""  # sent as X-Interlock-Actor: an unverified "on behalf of" note in the audit log; default: OS user

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> CliSettings:
        env = os.environ if env is None else env
        tok = _secret(env, "ADMIN_TOKEN")
        return cls(admin_url=_get(env, "ADMIN_URL", cls.admin_url, str), admin_token=tok.decode() if tok else "",
                   actor=_get(env, "ACTOR", env.get("USER", "") or env.get("LOGNAME", ""), str))


@dataclass(frozen=True)
class DevSettings:
    data_dir: Path = Path(".interlock")
    host: str = "127.0.0.1"
    port: int = 8080
    admin_port: int = 8081
    grpc_port: int = 50051
    fake_provider_port: int = 9099
    with_usage: bool = True
    usage_flush_ms: int = 200  # the usage WAL is shipped to chDB this often

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DevSettings:
        env = os.environ if env is None else env
        return cls(
            data_dir=_get(env, "DATA_DIR", cls.data_dir, Path),
            host=_get(env, "DP_HOST", cls.host, str),
            port=_get(env, "DP_PORT", cls.port, int),
            admin_port=_get(env, "ADMIN_PORT", cls.admin_port, int),
            grpc_port=_get(env, "GRPC_PORT", cls.grpc_port, int),
            fake_provider_port=_get(env, "FAKE_PROVIDER_PORT", cls.fake_provider_port, int),
            with_usage=_get(env, "DEV_USAGE", cls.with_usage, _bool),
            usage_flush_ms=_get(env, "DEV_USAGE_FLUSH_MS", cls.usage_flush_ms, int),
        )


@dataclass(frozen=True)
class IngestSettings:
    """The Kafka -> ClickHouse ingest service (`interlock ingest`)."""

    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_topic: str = "interlock.usage.v1"  # = dataplane.usage_kafka.DEFAULT_TOPIC (not imported: keeps settings light)
    kafka_group: str = "interlock-ingest"
    dlq_topic: str = ""  # "" = kafka_topic + ".dlq"
    clickhouse_dsn: str = ""
    batch_max: int = 20_000  # events per partition batch
    batch_ms: int = 1000  # a partition batch is flushed at most this long after its first record
    health_host: str = "127.0.0.1"
    health_port: int = 8090  # 0 = any free port
    rollup_interval_s: float = 30.0  # how often the exact rollups are brought up to date (ingest.rollup); 0 = never

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> IngestSettings:
        env = os.environ if env is None else env
        topic = _get(env, "KAFKA_TOPIC", cls.kafka_topic, str)
        settings = cls(
            kafka_bootstrap=_get(env, "KAFKA_BOOTSTRAP", cls.kafka_bootstrap, str),
            kafka_topic=topic,
            kafka_group=_get(env, "KAFKA_GROUP", cls.kafka_group, str),
            dlq_topic=_get(env, "DLQ_TOPIC", topic + ".dlq", str),
            clickhouse_dsn=_get(env, "CLICKHOUSE_DSN", cls.clickhouse_dsn, str),
            batch_max=_get(env, "INGEST_BATCH_MAX", cls.batch_max, int),
            batch_ms=_get(env, "INGEST_BATCH_MS", cls.batch_ms, int),
            health_host=_get(env, "INGEST_HEALTH_HOST", cls.health_host, str),
            health_port=_get(env, "INGEST_HEALTH_PORT", cls.health_port, int),
            rollup_interval_s=_get(env, "INGEST_ROLLUP_INTERVAL_S", cls.rollup_interval_s, float),
        )
        if not settings.clickhouse_dsn:
            raise SettingsError(f"{PREFIX}CLICKHOUSE_DSN must be set (e.g. chdb:///abs/dir or http://host:8123)")
        if settings.batch_max <= 0 or settings.batch_ms <= 0:
            raise SettingsError(f"{PREFIX}INGEST_BATCH_MAX and {PREFIX}INGEST_BATCH_MS must be positive")
        if settings.rollup_interval_s < 0:
            raise SettingsError(f"{PREFIX}INGEST_ROLLUP_INTERVAL_S must be 0 (off) or a positive number of seconds")
        return settings

    @property
    def dead_letter_topic(self) -> str:
        return self.dlq_topic or self.kafka_topic + ".dlq"
