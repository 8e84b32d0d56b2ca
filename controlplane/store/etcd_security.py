"""How the control plane reaches etcd securely: TLS and etcd user auth (kept apart from etcd.py: no aetcd import)."""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc


@dataclass(frozen=True)
class EtcdSecurity:
    """TLS (server CA, optional client certificate for --client-cert-auth) and etcd user auth. PEM bytes."""

    ca_cert: bytes | None = None
    cert_chain: bytes | None = None
    private_key: bytes | None = field(default=None, repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def tls(self) -> bool:
        return self.ca_cert is not None or self.cert_chain is not None

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(self.ca_cert, self.private_key, self.cert_chain)
