"""Policy stores: etcd in production, embedded sqlite for the one-command dev mode.

See `layout` for how policy, keys and node status are laid out in the store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import KV, Entry

if TYPE_CHECKING:
    from .etcd_security import EtcdSecurity

__all__ = ["KV", "Entry", "open_store", "parse_etcd_endpoints"]

ETCD_DEFAULT_PORT = 2379


def parse_etcd_endpoints(spec: str) -> list[tuple[str, int]]:
    """"host:port,host:port" (port defaults to 2379; IPv6 literals as [::1]:2379)."""
    endpoints = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        host, sep, port = part.rpartition(":")
        if not sep or host.endswith(":") or (host.count(":") and not host.startswith("[")):
            host, port = part, str(ETCD_DEFAULT_PORT)  # no port given
        if not port.isdigit():
            raise ValueError(f"etcd endpoint {part!r}: port must be a number")
        endpoints.append((host, int(port)))  # brackets kept: aetcd builds "host:port"
    if not endpoints:
        raise ValueError("no etcd endpoint given")
    return endpoints


def open_store(url: str, prefix: str, *, etcd_security: EtcdSecurity | None = None) -> KV:
    """Open `etcd://host:port[,host:port]` or `sqlite:///relative/path.db` (`sqlite:////abs/path.db`).

    Every key the store handles lives under `prefix` (e.g. "/interlock"), so
    several deployments, or tests, can share one etcd. `etcd_security`: TLS and user auth for etcd.
    """
    if url.startswith("etcd://"):
        from .etcd import EtcdKV

        return EtcdKV(parse_etcd_endpoints(url.removeprefix("etcd://").rstrip("/")), prefix, security=etcd_security)
    if url.startswith("sqlite:///"):
        from .embedded import SqliteKV

        return SqliteKV(url.removeprefix("sqlite:///"), prefix)
    raise ValueError(f"unsupported store URL {url!r}: use etcd://host:port[,host:port] or sqlite:///path/to/policy.db")
