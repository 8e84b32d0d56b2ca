"""The per-request context: everything the stages learn about one request, and the only writer of its response.

Stages (dataplane/pipeline/stages.py) fill it in order; the attempt loop and the forwarder read it instead of
taking the request's pieces as ten arguments. Every byte that reaches the client goes through send(),
start_stream()/write()/end_stream() or fail(), so an output stage (e.g. output guardrails) can see all of it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from dataplane.dialects.client_errors import GatewayError
from dataplane.routing.report import route_headers

if TYPE_CHECKING:
    from dataplane.dialects.base import Usage
    from dataplane.http.messages import Request, Responder
    from dataplane.pipeline.endpoint import Endpoint
    from dataplane.policy_types import KeyEntry
    from dataplane.routing.table import Constraint, Plan
    from dataplane.snapshot.policy import CompiledPolicy
    from dataplane.usage.event import RequestRecord


class OutputFilter(Protocol):
    """What an output stage plugs into the context: sees every body/chunk before the client does."""

    def body(self, ctx: RequestContext, status: int, payload: bytes) -> bytes: ...

    def chunk(self, ctx: RequestContext, data: bytes) -> bytes: ...

    def flush(self, ctx: RequestContext) -> bytes: ...

    @property
    def blocked(self) -> bool: ...

    def bill(self, usage: Usage) -> Usage: ...


class RequestContext:
    __slots__ = ("_on_seal", "_resp", "_sealed", "body", "constraint", "ep", "key", "output", "plan", "policy", "rec", "req",
                 "stream")

    def __init__(self, req: Request, resp: Responder, ep: Endpoint, rec: RequestRecord,
                 on_seal: Callable[[RequestContext], None] | None = None) -> None:
        self.req = req
        self._resp = resp
        self._on_seal = on_seal  # records the usage event durably; called once, before the client's last byte
        self._sealed = False
        self.ep = ep
        self.rec = rec
        self.policy: CompiledPolicy | None = None
        self.key: KeyEntry | None = None
        self.body: dict[str, Any] = {}
        self.stream = False
        self.plan: Plan | None = None
        self.constraint: Constraint | None = None
        self.output: OutputFilter | None = None  # set by the output-guardrail stage when one applies

    # -- what stages and attempts may ask about the client side
    @property
    def started(self) -> bool:
        return self._resp.started

    @property
    def disconnected(self) -> bool:
        return self._resp.disconnected

    @property
    def bytes_sent(self) -> int:
        return self._resp.bytes_sent

    @property
    def sealed(self) -> bool:
        return self._sealed

    def seal(self) -> None:
        """The request's record is final: hand it to the usage sink now, before the last byte goes out, so a
        client that got its whole answer is never missing from usage even if the node is killed right after."""
        if not self._sealed:
            self._sealed = True
            if self._on_seal is not None:
                self._on_seal(self)

    # -- the only writers of the response
    def send(self, status: int, ctype: str, payload: bytes, headers: Iterable[tuple[str, str]] = ()) -> None:
        """A whole (non-streamed) answer, with the routing report headers."""
        if self.output is not None:
            payload = self.output.body(self, status, payload)
        rec = self.rec
        rec.response_bytes = len(payload)
        extra = [*headers, *route_headers(rec.route_rule, rec.attempts)]
        self.seal()
        self._resp.send(status, ctype, payload, extra)

    def start_stream(self, status: int, ctype: str, headers: Iterable[tuple[str, str]]) -> None:
        self._resp.start_stream(status, ctype, headers)

    async def write(self, data: bytes) -> None:
        if self.output is not None:
            data = self.output.chunk(self, data)
            if not data:
                return
        await self._resp.write(data)

    async def end_stream(self) -> None:
        """Ends a stream; the caller has already put the stream's usage on the record."""
        tail = self.output.flush(self) if self.output is not None else b""
        self.rec.response_bytes = self._resp.bytes_sent + (0 if self._resp.disconnected else len(tail))
        self.seal()
        if tail:
            await self._resp.write(tail)
        self._resp.end_stream()

    async def fail(self, exc: GatewayError) -> None:
        """An error in the client's dialect: a JSON error if nothing was sent yet, else a terminal stream event."""
        rec, dialect = self.rec, self.ep.dialect
        rec.status = exc.status
        rec.error_class = rec.error_class or exc.kind
        if not self._resp.started:
            body = dialect.error_body(exc.status, exc.kind, exc.message)
            headers = (("x-interlock-request-id", rec.event_id), *exc.headers, *route_headers(rec.route_rule, rec.attempts))
            self.seal()
            self._resp.send(exc.status, "application/json", body, headers)
        else:
            if self.output is not None and self.output.blocked:
                rec.usage = self.output.bill(rec.usage)  # a stream ended by a guardrail: bill what was delivered
            event = dialect.stream_error_event(exc.kind, exc.message)
            self.seal()
            await self._resp.write(event)
            self._resp.end_stream()
