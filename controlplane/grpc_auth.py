"""Who may use the control plane's gRPC port: server TLS (optionally mutual) and a node bootstrap token.

One interceptor guards every method on the port (ControlPlane/Subscribe and BudgetService/Sync alike): a
node must send `authorization: Bearer <INTERLOCK_NODE_TOKEN>` as call metadata. The token is compared in
constant time and never logged or echoed. Mutual TLS is enforced by the TLS handshake itself, before any
method runs. Plaintext is the embedded/dev default and is refused off loopback (see
ControlPlaneSettings.grpc_security_problem).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import grpc.aio

from interlock_contracts.settings.common import PREFIX, SettingsError
from interlock_contracts.settings.controlplane import ControlPlaneSettings

log = logging.getLogger(__name__)
TOKEN_HEADER = "authorization"
TOKEN_SCHEME = "Bearer "
_REFUSAL = f"this node did not present a valid node token (set {PREFIX}NODE_TOKEN on the data plane)"


@dataclass(frozen=True)
class ServerSecurity:
    credentials: grpc.ServerCredentials | None  # None = plaintext
    interceptors: tuple[grpc.aio.ServerInterceptor, ...] = ()

    @property
    def describe(self) -> str:
        """For the startup log line: which protections are on (never the secrets themselves)."""
        parts = ["tls" if self.credentials is not None else "plaintext"]
        parts += [i.describe for i in self.interceptors if isinstance(i, NodeTokenInterceptor)]
        return "+".join(parts)


def server_security(settings: ControlPlaneSettings) -> ServerSecurity:
    """Credentials and interceptors for the gRPC server, or SettingsError naming the setting to fix."""
    if problem := settings.grpc_security_problem():
        raise SettingsError(problem)
    credentials = None
    if settings.grpc_tls_cert is not None and settings.grpc_tls_key is not None:
        pair = (read_pem(settings.grpc_tls_key, "GRPC_TLS_KEY"), read_pem(settings.grpc_tls_cert, "GRPC_TLS_CERT"))
        client_ca = read_pem(settings.grpc_client_ca, "GRPC_CLIENT_CA") if settings.grpc_client_ca else None
        credentials = grpc.ssl_server_credentials([pair], root_certificates=client_ca,
                                                  require_client_auth=client_ca is not None)
    interceptors = (NodeTokenInterceptor(settings.node_token),) if settings.node_token else ()
    return ServerSecurity(credentials, interceptors)


def read_pem(path: Path, setting: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SettingsError(f"{PREFIX}{setting}={str(path)!r} cannot be read: {exc.strerror}") from exc


class NodeTokenInterceptor(grpc.aio.ServerInterceptor):
    """Refuses (UNAUTHENTICATED) every call that lacks the node token."""

    describe = "node-token"

    def __init__(self, token: bytes):
        if not token:
            raise ValueError("empty node token")
        self._digest = hashlib.sha256(TOKEN_SCHEME.encode() + token).digest()
        self.refused = 0  # observable for tests and metrics

    def __repr__(self) -> str:
        return "NodeTokenInterceptor(<token hidden>)"

    def accepts(self, metadata: Any) -> bool:
        presented = b""
        for key, value in metadata or ():
            if key == TOKEN_HEADER:
                presented = value.encode() if isinstance(value, str) else bytes(value)
                break
        # Digests make the compare constant-time in the token's length too.
        return hmac.compare_digest(hashlib.sha256(presented).digest(), self._digest)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or self.accepts(handler_call_details.invocation_metadata):
            return handler
        self.refused += 1
        log.warning("refused gRPC call %s: missing or invalid node token", handler_call_details.method)
        return _refusing(handler)


def _refusing(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """A handler of the same shape as `handler` that only aborts (the real one never runs)."""

    async def refuse(_request: object, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, _REFUSAL)

    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(refuse)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(refuse)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(refuse)
    return grpc.unary_unary_rpc_method_handler(refuse)
