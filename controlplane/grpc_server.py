"""gRPC server for `interlock.v1.ControlPlane/Subscribe` (see proto/interlock_contracts/v1/control.proto).

Per stream: the node's Hello, then the current snapshot unless the node already
has it, every newer snapshot, and a Heartbeat after `heartbeat_s` with nothing else sent. Acks are
recorded into node status by a NodeSession, which never blocks the stream.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import suppress

import grpc

from interlock_contracts.v1 import control_pb2

from .grpc_auth import ServerSecurity
from .node_status_writer import NodeStatusWriter
from .nodes import NodeSession
from .publisher import SnapshotPublisher, Subscription
from .store.base import KV

log = logging.getLogger(__name__)
SERVICE = "interlock.v1.ControlPlane"
NODE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")  # it becomes a store key: no slashes
_SERVER_OPTIONS = [
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 20_000),  # find dead nodes behind silent network failures
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),  # let nodes keepalive-ping us
    ("grpc.keepalive_permit_without_calls", 1),
]


def _passthrough(message: bytes) -> bytes:
    return message  # messages are serialised once, upstream


class ControlPlaneServicer:
    def __init__(
        self, publisher: SnapshotPublisher, kv: KV, *, heartbeat_s: float, clock: Callable[[], float] = time.time
    ):
        self._publisher = publisher
        self._kv = kv
        self._heartbeat_s = heartbeat_s
        self._clock = clock
        self._streams: dict[str, int] = {}  # node_id -> open streams here (a reconnect may overlap the old one)
        self._closing: set[asyncio.Task[None]] = set()
        self.policy_bytes_sent = 0  # snapshot and delta bytes written to all streams (benchmarks)
        self.acks_received = 0  # from all nodes (benchmarks, tests: nodes coalesce accepted acks)
        self._status_writer = NodeStatusWriter(kv)  # every node's acks in one store write per second

    def _heartbeat(self) -> bytes:
        current = self._publisher.current
        beat = control_pb2.Heartbeat(
            current_version=current.version if current else 0, server_time_unix_ms=int(self._clock() * 1000)
        )
        return control_pb2.ControlMessage(heartbeat=beat).SerializeToString()

    async def Subscribe(
        self, requests: AsyncIterator[control_pb2.NodeMessage], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        incoming = aiter(requests)
        first = await anext(incoming, None)
        if first is None:
            return
        if first.WhichOneof("msg") != "hello":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first message on Subscribe must be Hello")
        hello = first.hello
        if not NODE_ID_RE.match(hello.node_id):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"invalid node_id {hello.node_id!r}: use [A-Za-z0-9._:-]")
        node_id = hello.node_id
        session = NodeSession(self._kv, self._clock, hello, peer=context.peer(), ttl_s=max(3 * self._heartbeat_s, 2.0),
                              writer=self._status_writer)
        self._streams[node_id] = self._streams.get(node_id, 0) + 1
        sub = self._publisher.subscribe()  # before reading `current`, so nothing published in between is missed
        wants = _NodeWants(deltas=hello.accepts_deltas)
        reader = asyncio.get_running_loop().create_task(self._read(incoming, session, sub, wants))
        session.start()
        log.info("node %s subscribed (has version %d) from %s", node_id, hello.last_version, context.peer())
        try:
            async for message in self._stream(hello, sub, session, wants):
                yield message
        finally:
            reader.cancel()
            self._publisher.unsubscribe(sub)
            self._streams[node_id] -= 1
            last = self._streams[node_id] == 0
            if last:
                del self._streams[node_id]
            # Detached: this generator may be finalising under cancellation, the write must still happen.
            task = asyncio.get_running_loop().create_task(session.close(last_session=last))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
            log.info("node %s disconnected", node_id)

    def _update_for(self, sent: tuple[int, str], wants: _NodeWants) -> tuple[bytes | None, tuple[int, str]]:
        """What takes a node holding `sent` to the current version: a delta when it takes them and the history
        reaches back to its version, else the full snapshot (first connect, gap, or the node asked)."""
        current = self._publisher.current
        if current is None or current.ident == sent:
            return None, sent
        history = self._publisher.history
        message = None
        if wants.deltas and not wants.full and sent[0]:
            message = history.delta_message(*sent)
        wants.delta_version = 0
        if message is None:
            message = history.full_message()
            wants.full = False
        else:
            wants.delta_version = current.version
        self.policy_bytes_sent += len(message)
        return message, current.ident

    async def _stream(
        self, hello: control_pb2.Hello, sub: Subscription, session: NodeSession, wants: _NodeWants,
    ) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        sent: tuple[int, str] = (hello.last_version, hello.last_content_hash)
        message, sent = self._update_for(sent, wants)
        if message is not None:
            yield message
        # A heartbeat goes only after heartbeat_s with nothing sent (deltas prove the stream works as well): under
        # a stream of mints, 100 nodes' heartbeats were 20 gRPC messages a second for nothing (issue 16). The node's
        # liveness is still refreshed every heartbeat_s.
        next_beat = next_touch = loop.time()  # first heartbeat right away: tells the node the current version
        while True:
            item = await sub.wait(min(next_beat, next_touch) - loop.time())
            if sub.closed:
                return  # the node closed its side, or the stream broke (the reader closed the subscription)
            if item is not None:
                if wants.full:
                    sent = (0, "")  # the node rejected what it was sent: it gets everything again
                message, sent = self._update_for(sent, wants)
                if message is not None:
                    yield message
                    next_beat = loop.time() + self._heartbeat_s
            if loop.time() >= next_beat:
                yield self._heartbeat()
                next_beat = loop.time() + self._heartbeat_s
            if loop.time() >= next_touch:
                session.touch()
                next_touch = loop.time() + self._heartbeat_s

    async def _read(self, requests: AsyncIterator[control_pb2.NodeMessage], session: NodeSession,
                    sub: Subscription, wants: _NodeWants) -> None:
        node_id = session.record.node_id
        try:
            await self._read_acks(requests, session, sub, wants, node_id)
        finally:
            sub.close()  # wakes the stream: it ends

    async def _read_acks(self, requests: AsyncIterator[control_pb2.NodeMessage], session: NodeSession,
                         sub: Subscription, wants: _NodeWants, node_id: str) -> None:
        with suppress(grpc.RpcError, asyncio.CancelledError):
            async for message in requests:
                kind = message.WhichOneof("msg")
                if kind == "ack":
                    self.acks_received += 1
                    ack = message.ack
                    if not ack.accepted:
                        log.warning("node %s rejected version %d: %s", node_id, ack.version, ack.reason[:200])
                        if ack.version == wants.delta_version and self._publisher.current is not None:
                            wants.full = True  # resend the full snapshot (a rejected full one is not resent)
                            sub.offer(self._publisher.current)
                    session.ack(ack)
                    session.touch()
                else:
                    log.debug("node %s: ignoring %s after Hello", node_id, kind)

    async def drain(self) -> None:
        """Wait for pending disconnect writes (used on shutdown)."""
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        await self._status_writer.close()


class _NodeWants:
    """Per stream: whether the node takes deltas, and whether it asked for a full snapshot (by rejecting one)."""

    def __init__(self, deltas: bool):
        self.deltas = deltas
        self.full = False
        self.delta_version = 0  # version of the last delta sent (rejecting it asks for everything)


def add_to_server(servicer: ControlPlaneServicer, server: grpc.aio.Server) -> None:
    """Register by hand (not add_ControlPlaneServicer_to_server) to send pre-serialised messages."""
    handlers = {
        "Subscribe": grpc.stream_stream_rpc_method_handler(
            servicer.Subscribe,
            request_deserializer=control_pb2.NodeMessage.FromString,
            response_serializer=_passthrough,
        )
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)


def build_server(
    publisher: SnapshotPublisher,
    kv: KV,
    *,
    host: str,
    port: int,
    heartbeat_s: float,
    clock: Callable[[], float] = time.time,
    services: Iterable[Callable[[grpc.aio.Server], None]] = (),
    security: ServerSecurity | None = None,
) -> tuple[grpc.aio.Server, ControlPlaneServicer, int]:
    """A bound, not yet started server; returns (server, servicer, bound port).
    `services` register further services on the same port (e.g. BudgetService); `security` (TLS credentials,
    node-token interceptor) applies to every one of them. None = plaintext, anyone may call."""
    security = security or ServerSecurity(None)
    server = grpc.aio.server(options=_SERVER_OPTIONS, interceptors=security.interceptors)
    servicer = ControlPlaneServicer(publisher, kv, heartbeat_s=heartbeat_s, clock=clock)
    add_to_server(servicer, server)
    for register in services:
        register(server)
    address = f"{host}:{port}"
    if security.credentials is not None:
        bound = server.add_secure_port(address, security.credentials)
    else:
        bound = server.add_insecure_port(address)
    if bound == 0:
        raise OSError(f"cannot listen for gRPC on {host}:{port}")
    return server, servicer, bound


async def start_control_plane_grpc(
    publisher: SnapshotPublisher,
    kv: KV,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    heartbeat_s: float = 5.0,
    clock: Callable[[], float] = time.time,
) -> tuple[grpc.aio.Server, int]:
    """Start the ControlPlane gRPC server (port 0 = pick a free one); returns (server, bound port).
    The publisher must be started separately; stop with `await server.stop(grace)`."""
    server, _, bound = build_server(publisher, kv, host=host, port=port, heartbeat_s=heartbeat_s, clock=clock)
    await server.start()
    return server, bound
