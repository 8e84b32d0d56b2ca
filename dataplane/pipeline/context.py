"""The per-request context: everything the stages learn about one request, and the only writer of its response.

Stages (dataplane/pipeline/stages.py) fill it in order; the attempt loop and the forwarder read it instead of
taking the request's pieces as ten arguments. Every byte that reaches the client goes through send(),
start_stream()/write()/end_stream() or fail(), so an output stage (e.g. output guardrails) can see all of it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

from dataplane.gateway_errors import GatewayError
from dataplane.routing.report import route_headers

if TYPE_CHECKING:
    from dataplane.attempt import Endpoint
    from dataplane.dialects.base import Usage
    from dataplane.http.messages import Request, Responder
    from dataplane.policy import CompiledPolicy, KeyEntry
    from dataplane.routing.table import Constraint, Plan
    from dataplane.usage_event import RequestRecord


class OutputFilter(Protocol):
    """What an output stage plugs into the context: sees every body/chunk before the client does."""

    def body(self, ctx: RequestContext, status: int, payload: bytes) -> bytes: ...

    def chunk(self, ctx: RequestContext, data: bytes) -> bytes: ...

    def flush(self, ctx: RequestContext) -> bytes: ...

    @property
    def blocked(self) -> bool: ...

    def bill(self, usage: Usage) -> Usage: ...


class RequestContext:
    __slots__ = ("_resp", "body", "constraint", "ep", "key", "output", "plan", "policy", "rec", "req", "stream")

    def __init__(self, req: Request, resp: Responder, ep: Endpoint, rec: RequestRecord) -> None:
        self.req = req
        self._resp = resp
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

    # -- the only writers of the response
    def send(self, status: int, ctype: str, payload: bytes, headers: Iterable[tuple[str, str]] = ()) -> None:
        """A whole (non-streamed) answer, with the routing report headers."""
        if self.output is not None:
            payload = self.output.body(self, status, payload)
        rec = self.rec
        self._resp.send(status, ctype, payload, [*headers, *route_headers(rec.route_rule, rec.attempts)])
        rec.response_bytes = len(payload)

    def start_stream(self, status: int, ctype: str, headers: Iterable[tuple[str, str]]) -> None:
        self._resp.start_stream(status, ctype, headers)

    async def write(self, data: bytes) -> None:
        if self.output is not None:
            data = self.output.chunk(self, data)
            if not data:
                return
        await self._resp.write(data)

    async def end_stream(self) -> None:
        if self.output is not None and (tail := self.output.flush(self)):
            await self._resp.write(tail)
        self._resp.end_stream()

    async def fail(self, exc: GatewayError) -> None:
        """An error in the client's dialect: a JSON error if nothing was sent yet, else a terminal stream event."""
        rec, dialect = self.rec, self.ep.dialect
        rec.status = exc.status
        rec.error_class = rec.error_class or exc.kind
        if not self._resp.started:
            self._resp.send(exc.status, "application/json", dialect.error_body(exc.status, exc.kind, exc.message),
                            (("x-interlock-request-id", rec.event_id), *exc.headers,
                             *route_headers(rec.route_rule, rec.attempts)))
        else:
            if self.output is not None and self.output.blocked:
                rec.usage = self.output.bill(rec.usage)  # a stream ended by a guardrail: bill what was delivered
            await self._resp.write(dialect.stream_error_event(exc.kind, exc.message))
            self._resp.end_stream()
