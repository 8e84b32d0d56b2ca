"""One attempt against one deployment: translate if the APIs differ, build the provider request, send it,
and either relay the answer to the client or report a retryable failure to the attempt loop."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import orjson

from dataplane.dialects.base import ErrorKind, StreamUsageScanner, Usage, WireAPI
from dataplane.dialects.client_errors import GatewayError, bad_request
from dataplane.pipeline.context import RequestContext
from dataplane.pipeline.upstream import PASSTHROUGH_RESPONSE_HEADERS, Upstream, UpstreamResponse
from dataplane.pipeline.upstream_body import read_bounded
from dataplane.providers.base import DecodingScanner
from dataplane.routing.backoff import retry_after_s
from dataplane.routing.failure import exception_class, status_class
from dataplane.routing.report import AttemptRecord, route_headers
from dataplane.routing.table import Plan, RuntimeDeployment
from dataplane.snapshot.policy import RuntimeModel
from dataplane.translate.base import Params
from dataplane.translate.binding import Translation, Translations
from dataplane.translate.count_tokens import COUNT, COUNT_HEADER, CountTranslation, counted
from dataplane.usage.event import RequestRecord


@dataclass(slots=True)
class Outcome:
    """How one attempt ended. `retry`: a retryable failure and nothing reached the client; what to send
    (payload/ctype/extra, or exc) if no attempt is left."""

    status: int
    error_class: str
    retry: bool
    retry_after_s: float | None = None
    payload: bytes = b""
    ctype: str = "application/json"
    extra: list[tuple[str, str]] = field(default_factory=list)
    exc: GatewayError | None = None


OK = Outcome(200, "", False)
_UPSTREAM_KINDS = frozenset({ErrorKind.TIMEOUT, ErrorKind.UPSTREAM})  # GatewayErrors dataplane.pipeline.upstream raises


class _Ready:
    """An awaitable that is already done (None): cheaper than a coroutine on the hot path."""

    __slots__ = ()

    def __await__(self) -> Generator[None, None, None]:
        return iter(())  # type: ignore[return-value]


class _NoLimit:
    """Stands in for asyncio.timeout() when a rule sets no per-attempt timeout (no timer on the hot path)."""

    __slots__ = ()

    def __aenter__(self) -> _Ready:
        return _READY

    def __aexit__(self, *exc: object) -> _Ready:
        return _READY

    def reschedule(self, when: float | None) -> None:
        return None


_READY = _Ready()
_NO_LIMIT = _NoLimit()
_Deadline = asyncio.Timeout | _NoLimit


def record_model(rec: RequestRecord, m: RuntimeModel) -> None:
    rec.model, rec.provider, rec.upstream_model = m.name, m.provider.name, m.upstream_name
    rec.price = m.price
    rec.price_version = m.price.version


class Forwarder:
    """Sends attempts upstream; the attempt loop (dataplane/pipeline/attempt_loop.py) decides which and how many."""

    def __init__(self, *, upstream: Upstream, translations: Translations | None, clock: Callable[[], float],
                 monotonic: Callable[[], float]) -> None:
        self._upstream = upstream
        self._translations = translations
        self._clock = clock
        self._monotonic = monotonic

    async def attempt(
        self, ctx: RequestContext, body: dict[str, Any], dep: RuntimeDeployment, plan: Plan, deadline: float,
    ) -> Outcome:
        rec, ep, stream = ctx.rec, ctx.ep, ctx.stream
        m = dep.model
        record_model(rec, m)
        requested = rec.requested_model
        prov = m.provider
        started = self._monotonic()
        if prov.unavailable:
            self.note(rec, dep, 503, "unavailable", started)
            return Outcome(503, "unavailable", True, exc=GatewayError(
                503, ErrorKind.UNAVAILABLE, f"model {requested!r} is unavailable on this node: {prov.unavailable}"))
        adapter = prov.adapter
        xl: Translation | CountTranslation | None = None  # cross-API translation (dataplane/translate/)
        if self._translations is not None and self._translations.needed(ep.dialect, ep.operation, adapter):
            xl = self._translations.bind(ep.dialect, ep.operation, adapter, Params(
                requested, stream, int(self._clock()), adapter.kind, m.max_output_tokens, m.upstream_name))
            body = xl.request(body)
            if isinstance(xl, CountTranslation) and xl.local:  # no counting endpoint: a marked local estimate
                return self._count_locally(ctx, dep, xl, body, started)
        elif adapter.dialect != ep.dialect.family:
            raise bad_request(f"model {requested!r} is served by a provider speaking the {adapter.dialect} API; "
                              f"this endpoint speaks {ep.dialect.family} (cross-API translation is not enabled)")
        operation = xl.operation if xl else ep.operation
        strip_usage = adapter.prepare_body(body, m.upstream_name, stream, operation)
        try:
            url, headers, payload = adapter.build_request(  # URL, auth and signing over the final body bytes
                prov, operation, m.upstream_name, stream, body, ctx.req.headers, m.url_model)
        except orjson.JSONEncodeError as exc:  # orjson parses 1,024 levels of nesting but writes only 254
            raise bad_request(f"the request body cannot be forwarded: JSON nested too deeply ({exc})") from None
        timeout_s = prov.timeout_s if deadline == math.inf else max(0.001, min(prov.timeout_s, deadline - started))
        limit: _Deadline = asyncio.timeout(plan.attempt_timeout_s) if plan.attempt_timeout_s else _NO_LIMIT
        try:
            async with limit, self._upstream.post(url, headers, payload, timeout_s, prov.name) as upstream:
                extra = [("x-interlock-request-id", rec.event_id)]
                extra += [(h, v) for h in PASSTHROUGH_RESPONSE_HEADERS if (v := upstream.headers.get(h)) is not None]
                status = upstream.status
                if stream and status == 200:
                    scanner = xl.scanner() if xl else ep.dialect.stream_scanner(strip_usage)
                    if (decoder := adapter.stream_decoder()) is not None:  # e.g. AWS event-stream -> SSE
                        scanner = DecodingScanner(decoder, scanner)
                    chunks = upstream.content.iter_any().__aiter__()
                    first = await anext(chunks, b"")  # until this arrives a failure can still fall back
                    limit.reschedule(None)
                    self.note(rec, dep, 200, "", started)
                    extra += route_headers(rec.route_rule, rec.attempts)
                    rec.status = 200
                    await self._relay_stream(upstream, ctx, scanner, extra, first, chunks)
                    return OK
                payload = await read_bounded(upstream, prov.name)  # bounded: dataplane/pipeline/upstream_body.py
                cls = status_class(status, payload) if status != 200 else ""
                ctype = upstream.headers.get("content-type", "application/json")
                if status != 200 and (own := adapter.error_payload(status, payload)) is not None:
                    payload, ctype = own, "application/json"  # e.g. Bedrock's {"message"} -> its dialect's error
                if xl:
                    out, ctype = xl.response(status, payload), "application/json"
                else:
                    out = payload
                self.note(rec, dep, status, cls, started)
                if cls in plan.retryable:
                    return Outcome(status, cls, True, retry_after_s(upstream.headers, self._clock()), out, ctype, extra)
                rec.first_byte_s = self._clock()
                rec.status, rec.error_class = status, cls
                if status == 200 and ep.operation == COUNT:  # a count is not usage: nothing is billed
                    rec.counted_tokens = counted((xl.provider if xl else ep.dialect).family, payload)
                    extra.append((COUNT_HEADER, "provider"))
                elif status == 200:
                    rec.usage = _usage_of(xl.provider if xl else ep.dialect, payload)  # the provider's own report
                ctx.send(status, ctype, out, extra)
                return OK if status == 200 else Outcome(status, cls, False)
        except (TimeoutError, GatewayError) as exc:
            if ctx.started or (isinstance(exc, GatewayError) and exc.kind not in _UPSTREAM_KINDS):
                raise
            err = exc if isinstance(exc, GatewayError) else GatewayError(
                504, ErrorKind.TIMEOUT, f"provider {prov.name!r} did not answer within {plan.attempt_timeout_s:g}s")
            cls = exception_class(exc)
            self.note(rec, dep, err.status, cls, started)
            return Outcome(err.status, cls, cls in plan.retryable, exc=err)

    def _count_locally(self, ctx: RequestContext, dep: RuntimeDeployment, xl: CountTranslation,
                       body: dict[str, Any], started: float) -> Outcome:
        rec = ctx.rec
        out, n = xl.estimate_answer(body)
        self.note(rec, dep, 200, "", started)
        rec.first_byte_s = self._clock()
        rec.status, rec.counted_tokens, rec.count_estimated = 200, n, True
        ctx.send(200, "application/json", out, [("x-interlock-request-id", rec.event_id), (COUNT_HEADER, "estimated")])
        return OK

    def note(self, rec: RequestRecord, dep: RuntimeDeployment, status: int, cls: str, started: float) -> None:
        m = dep.model
        rec.attempts.append(AttemptRecord(m.provider.name, dep.id, m.upstream_name, status, cls,
                                          int((self._monotonic() - started) * 1000)))

    async def _relay_stream(
        self, upstream: UpstreamResponse, ctx: RequestContext, scanner: StreamUsageScanner,
        extra: list[tuple[str, str]], first: bytes, chunks: AsyncIterator[bytes],
    ) -> None:
        rec = ctx.rec
        decoded = isinstance(scanner, DecodingScanner)  # e.g. Bedrock: event-stream in, SSE out
        ctx.start_stream(200, "text/event-stream" if decoded else upstream.headers.get("content-type", "text/event-stream"),
                          extra)
        try:
            if first:  # read before the response started (see attempt); the rest is the plain relay loop
                rec.first_byte_s = self._clock()
                out = _feed(scanner, first)
                if ctx.disconnected:
                    rec.client_disconnected = True
                else:
                    await ctx.write(out)
            if not rec.client_disconnected:
                async for chunk in chunks:
                    if not rec.first_byte_s:
                        rec.first_byte_s = self._clock()
                    out = _feed(scanner, chunk)
                    if ctx.disconnected:
                        rec.client_disconnected = True
                        break  # leaving the context closes the upstream connection: the provider stops generating
                    await ctx.write(out)
            rec.usage = scanner.usage if scanner.usage.reported else _estimate(rec, scanner.usage, scanner.events)
            await ctx.end_stream()  # the record is final here: end_stream seals it before the last bytes
        finally:
            if not ctx.sealed:  # the relay failed: usage so far, and what the client got, go on the failure's event
                rec.usage = scanner.usage if scanner.usage.reported else _estimate(rec, scanner.usage, scanner.events)
                rec.response_bytes = ctx.bytes_sent


def _feed(scanner: StreamUsageScanner, chunk: bytes) -> bytes:
    """A stream the scanner cannot read (malformed or hostile upstream bytes) ends with an error event in the
    client's dialect and is recorded as a failure, instead of a dropped connection."""
    try:
        return scanner.feed(chunk)
    except (ValueError, TypeError, KeyError, AttributeError, IndexError, OverflowError, ArithmeticError) as exc:
        raise GatewayError(502, ErrorKind.UPSTREAM, f"the provider's stream could not be read ({type(exc).__name__}); "
                           "the answer is incomplete") from exc


def parse_body(raw: bytes) -> dict[str, Any]:
    if not raw:
        raise bad_request("the request body is empty; send a JSON object")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"the request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    return body


def _estimate(rec: RequestRecord, partial: Usage, events: int) -> Usage:
    """The provider never sent its final usage (stream abandoned or cut): bill what was produced.

    Input: what the provider already said (Anthropic's message_start), else ~4 bytes per token of
    the request. Output: at least one token per relayed event. Marked as estimated in the event."""
    return Usage(
        input_tokens=partial.input_tokens or rec.request_bytes // 4, cached_input_tokens=partial.cached_input_tokens,
        output_tokens=max(partial.output_tokens, events), reported=False,
        cache_write_5m_tokens=partial.cache_write_5m_tokens, cache_write_1h_tokens=partial.cache_write_1h_tokens,
    )


def _usage_of(dialect: WireAPI, payload: bytes) -> Usage:
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return Usage()
    return dialect.usage_from_body(body) if isinstance(body, dict) else Usage()
