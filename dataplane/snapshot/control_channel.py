"""The data plane's side of the control-plane channel: credentials shared by snapshot sync and the lease client.

TLS when a CA (or INTERLOCK_CONTROL_PLANE_TLS) is set, a client certificate for mutual TLS, and the node
token as `authorization: Bearer ...` call metadata (see controlplane/grpc_auth.py). gRPC only attaches call
credentials to a protected channel, so a token without TLS rides "local" credentials, which gRPC allows for
loopback and unix-socket targets only (DataPlaneSettings refuses a token over plaintext to another host).
None = plaintext without a token: the embedded/dev default.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import grpc
import grpc.aio

from interlock_contracts.settings.common import PREFIX, SettingsError
from interlock_contracts.settings.dataplane import DataPlaneSettings

TOKEN_HEADER = "authorization"  # = controlplane.grpc_auth.TOKEN_HEADER (the data plane does not import the CP)


class _NodeToken(grpc.AuthMetadataPlugin):
    def __init__(self, token: bytes):
        self._metadata = ((TOKEN_HEADER, "Bearer " + token.decode()),)

    def __repr__(self) -> str:
        return "_NodeToken(<hidden>)"

    def __call__(self, context: grpc.AuthMetadataContext, callback: grpc.AuthMetadataPluginCallback) -> None:
        callback(self._metadata, None)


def channel_credentials(settings: DataPlaneSettings) -> grpc.ChannelCredentials | None:
    """Credentials for every channel to the control plane, or SettingsError naming the setting to fix."""
    if problem := settings.control_channel_problem():
        raise SettingsError(problem)
    if settings.control_plane_uses_tls:
        base = grpc.ssl_channel_credentials(
            root_certificates=_read(settings.control_plane_ca, "CONTROL_PLANE_CA"),
            private_key=_read(settings.control_plane_key, "CONTROL_PLANE_KEY"),
            certificate_chain=_read(settings.control_plane_cert, "CONTROL_PLANE_CERT"),
        )
    elif settings.node_token:
        kind = grpc.LocalConnectionType.UDS if settings.control_plane.startswith("unix:") else grpc.LocalConnectionType.LOCAL_TCP
        base = grpc.local_channel_credentials(kind)
    else:
        return None
    if not settings.node_token:
        return base
    return grpc.composite_channel_credentials(base, grpc.metadata_call_credentials(_NodeToken(settings.node_token)))


def open_channel(
    target: str, credentials: grpc.ChannelCredentials | None, options: Sequence[tuple[str, int | str]] = ()
) -> grpc.aio.Channel:
    """A channel to the control plane: secure when credentials are given, plaintext otherwise."""
    if credentials is not None:
        return grpc.aio.secure_channel(target, credentials, options=options)
    return grpc.aio.insecure_channel(target, options=options)


def _read(path: Path | None, setting: str) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SettingsError(f"{PREFIX}{setting}={str(path)!r} cannot be read: {exc.strerror}") from exc
