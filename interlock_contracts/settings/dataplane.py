"""The data plane's settings (`interlock dataplane`)."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from interlock_contracts.credential_refs import CredentialRules
from interlock_contracts.http_limits import HttpLimits
from interlock_contracts.settings.common import (
    PREFIX,
    SettingsError,
    _bool,
    _cert_key_problem,
    _fraction,
    _get,
    _path,
    _secret,
    _unreadable,
    is_loopback_host,
    target_host,
)


def _access_log_format(raw: str) -> str:
    v = raw.strip().lower()
    if v in ("json", "logfmt", "off"):
        return v
    if v in ("0", "false", "no", "none", ""):
        return "off"
    raise ValueError("must be json, logfmt or off")


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
    # Channel to the control plane (see dataplane/snapshot/control_channel.py): TLS when a CA is given or control_plane_tls,
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
