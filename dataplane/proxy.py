"""The governed pass-through: authenticate, admit, forward, stream back, capture usage, emit one event."""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from dataplane.admission import authenticate, presented_key
from dataplane.budget.gate import BudgetGate
from dataplane.dialects.base import Dialect, ErrorKind, StreamUsageScanner, Usage
from dataplane.gateway_errors import GatewayError, bad_request
from dataplane.http.messages import Request, Responder
from dataplane.policy import CompiledPolicy, Route, RuntimeModel
from dataplane.providers.base import DecodingScanner
from dataplane.routing.attempts import AttemptPlanner
from dataplane.routing.backoff import retry_after_s
from dataplane.routing.breaker import Breakers
from dataplane.routing.failure import UNHEALTHY, exception_class, status_class
from dataplane.routing.report import AttemptRecord, route_headers
from dataplane.routing.select import plan_for, session_of
from dataplane.routing.table import Plan, RuntimeDeployment
from dataplane.tags import TAGS_HEADER, missing, request_tags
from dataplane.translate.base import Params
from dataplane.translate.binding import Translation, Translations
from dataplane.upstream import PASSTHROUGH_RESPONSE_HEADERS, Upstream, UpstreamResponse
from dataplane.usage_event import EventIds, RequestRecord

if TYPE_CHECKING:
    from dataplane.usage_sink import UsageSink


@dataclass(frozen=True, slots=True)
class Endpoint:
    dialect: Dialect
    operation: str  # provider adapter path key: "chat", "messages"
    path: str


@dataclass(slots=True)
class _Outcome:
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


_OK = _Outcome(200, "", False)
_UPSTREAM_KINDS = frozenset({ErrorKind.TIMEOUT, ErrorKind.UPSTREAM})  # GatewayErrors dataplane.upstream raises


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


def _estimate(rec: RequestRecord, partial: Usage, events: int) -> Usage:
    """The provider never sent its final usage (stream abandoned or cut): bill what was produced.

    Input: what the provider already said (Anthropic's message_start), else ~4 bytes per token of
    the request. Output: at least one token per relayed event. Marked as estimated in the event."""
    return Usage(
        input_tokens=partial.input_tokens or rec.request_bytes // 4, cached_input_tokens=partial.cached_input_tokens,
        output_tokens=max(partial.output_tokens, events), reported=False,
    )


class Proxy:
    def __init__(
        self, *, policy: Callable[[], CompiledPolicy | None], pepper: bytes, upstream: Upstream, sink: UsageSink,
        node_id: str, clock: Callable[[], float] = time.time,
        budgets: BudgetGate | None = None, translations: Translations | None = None,
        monotonic: Callable[[], float] = time.monotonic, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None, breakers: Breakers | None = None,
    ):
        self._policy = policy
        self._pepper = pepper
        self._upstream = upstream
        self._sink = sink
        self._node_id = node_id
        self._clock = clock
        self._ids = EventIds()
        self._budgets = budgets
        self._translations = translations
        self._monotonic = monotonic
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.breakers = breakers or Breakers(monotonic)  # per node, kept across snapshot swaps

    async def handle(self, req: Request, resp: Responder, ep: Endpoint) -> None:
        rec = RequestRecord(self._ids, ep.dialect.name, ep.path, len(req.body))
        try:
            await self._forward(req, resp, ep, rec)
        except GatewayError as exc:
            rec.status = exc.status
            rec.error_class = rec.error_class or exc.kind
            if not resp.started:
                resp.send(exc.status, "application/json", ep.dialect.error_body(exc.status, exc.kind, exc.message),
                          (("x-interlock-request-id", rec.event_id), *exc.headers,
                           *route_headers(rec.route_rule, rec.attempts)))
            else:
                await resp.write(ep.dialect.stream_error_event(exc.kind, exc.message))
                resp.end_stream()
        finally:
            rec.done_s = self._clock()
            rec.client_disconnected = rec.client_disconnected or resp.disconnected
            if rec.price is not None:
                rec.cost_pico = rec.price.cost_pico(rec.usage)
            if rec.budget is not None and self._budgets is not None:
                self._budgets.settle(rec.budget, rec.usage, rec.model, rec.price)  # bill what was produced, free the rest
            self._sink.emit(rec.to_event(self._node_id))

    async def _forward(self, req: Request, resp: Responder, ep: Endpoint, rec: RequestRecord) -> None:
        policy = self._policy()
        if policy is None:
            raise GatewayError(503, ErrorKind.UNAVAILABLE, "this gateway node has no valid policy yet; retry shortly",
                               (("retry-after", "1"),))
        rec.policy_version = policy.version
        key = authenticate(policy, self._pepper, presented_key(req.headers, req.query), int(self._clock() * 1000))
        rec.key = key
        rec.tags = key.tags  # what the event carries if the body turns out unusable (not mutated: no copy)
        body = _parse_body(req.body)
        rec.tags = request_tags(key.tags, req.headers, body)
        if key.required_tags and (absent := missing(key.required_tags, rec.tags)):
            raise bad_request(
                f"team {key.team_id!r} requires the tags {', '.join(absent)}: send them as "
                f"'{TAGS_HEADER}: " + ",".join(f"{t}=..." for t in absent) + "'"
            )
        requested = ep.dialect.requested_model(req.path, body)  # Gemini names it in the URL, others in the body
        if not requested:
            raise bad_request("the request body must name a model, e.g. {\"model\": \"...\"}")
        stream = ep.dialect.wants_stream(req.path, body)
        rec.requested_model, rec.stream = requested, stream
        plan = plan_for(policy, key, requested, req.headers, rec.tags, body, len(req.body))
        rec.route_rule = plan.rule_id
        named = policy.routes.get(requested)
        rec.alias = named.alias if named is not None else ""
        route = Route(plan.targets[0].deployments[0].model, rec.alias)  # the first choice (budgets reserve for it)
        self._record_model(rec, route.model)
        if self._budgets is not None:  # budgets and rate limits (dataplane/budget/): reserve the worst case or refuse
            rec.budget = await self._budgets.admit(policy.budgets, key.id, rec.tags, requested, route, req.body, body,
                                                   ep.dialect.max_output_tokens(body), ep.dialect.name, ep.operation,
                                                   [d.model for t in plan.targets for d in t.deployments])
        deadline = self._monotonic() + plan.total_timeout_s if plan.total_timeout_s else math.inf
        planner = AttemptPlanner(plan, constraint=policy.routing.constraints.get(key.team_id), breakers=self.breakers,
                                 rng=self._rng, session=session_of(req.headers, rec.tags) if plan.sticky else "",
                                 deadline=deadline)
        await self._attempts(req, resp, ep, rec, body, planner, stream, deadline)

    async def _attempts(
        self, req: Request, resp: Responder, ep: Endpoint, rec: RequestRecord, body: dict[str, Any],
        planner: AttemptPlanner, stream: bool, deadline: float,
    ) -> None:
        """Try deployments in the planner's order until one answers; a retryable failure moves on only while
        nothing has reached the client. Each attempt picks its own adapter and translation."""
        last: _Outcome | None = None
        while (nxt := planner.next(self._monotonic())) is not None:
            if nxt.delay_s:
                await self._sleep(nxt.delay_s)
            if last is not None and resp.disconnected:  # the client left while we were failing over
                rec.client_disconnected = True
                break
            dep = nxt.deployment
            breaker = self.breakers.get(dep.id, dep.breaker)
            if breaker is not None and not breaker.allow(self._monotonic()):
                planner.skipped_open.append(dep)  # another request holds the half-open probe
                continue
            # the first attempt may consume the parsed body; later ones get a fresh copy (adapters rewrite it)
            attempt_body = body if not rec.attempts else _parse_body(req.body)
            started = self._monotonic()
            outcome: _Outcome | None = None
            try:
                outcome = await self._attempt(req, resp, ep, rec, attempt_body, dep, stream, planner.plan, deadline)
            except GatewayError as exc:
                if resp.started:
                    raise
                self._note(rec, dep, exc.status, exc.kind, started)  # e.g. no translation to this deployment's API
                if last is None:
                    raise
                continue  # a fallback this request cannot use: keep the earlier failure, try the next
            finally:
                if breaker is not None:
                    if outcome is None or outcome.error_class == "unavailable":  # the deployment was not asked
                        breaker.release(self._monotonic())
                    else:
                        breaker.record(outcome.error_class not in UNHEALTHY, self._monotonic())
            if not outcome.retry:
                return
            planner.failed(dep, outcome.retry_after_s)
            last = outcome
        if last is None:
            raise self._nothing_tried(rec, planner)
        rec.status, rec.error_class = last.status, last.error_class
        rec.first_byte_s = self._clock()
        if last.exc is not None:
            raise last.exc
        resp.send(last.status, last.ctype, last.payload, [*last.extra, *route_headers(rec.route_rule, rec.attempts)])
        rec.response_bytes = len(last.payload)

    async def _attempt(
        self, req: Request, resp: Responder, ep: Endpoint, rec: RequestRecord, body: dict[str, Any],
        dep: RuntimeDeployment, stream: bool, plan: Plan, deadline: float,
    ) -> _Outcome:
        m = dep.model
        self._record_model(rec, m)
        requested = rec.requested_model
        prov = m.provider
        started = self._monotonic()
        if prov.unavailable:
            self._note(rec, dep, 503, "unavailable", started)
            return _Outcome(503, "unavailable", True, exc=GatewayError(
                503, ErrorKind.UNAVAILABLE, f"model {requested!r} is unavailable on this node: {prov.unavailable}"))
        adapter = prov.adapter
        xl: Translation | None = None  # cross-API translation (dataplane/translate/) when the dialects differ
        if self._translations is not None and self._translations.needed(ep.dialect, ep.operation, adapter):
            xl = self._translations.bind(ep.dialect, ep.operation, adapter, Params(
                requested, stream, int(self._clock()), adapter.kind, m.max_output_tokens))
            body = xl.request(body)
        elif adapter.dialect != ep.dialect.name:
            raise bad_request(f"model {requested!r} is served by a provider speaking the {adapter.dialect} API; "
                              f"this endpoint speaks {ep.dialect.name} (cross-API translation is not enabled)")
        operation = xl.operation if xl else ep.operation
        strip_usage = adapter.prepare_body(body, m.upstream_name, stream, operation)
        url, headers, payload = adapter.build_request(  # URL, auth and signing over the final body bytes
            prov, operation, m.upstream_name, stream, body, req.headers)
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
                    self._note(rec, dep, 200, "", started)
                    extra += route_headers(rec.route_rule, rec.attempts)
                    rec.status = 200
                    await self._relay_stream(upstream, resp, scanner, rec, extra, first, chunks)
                    return _OK
                payload = await upstream.read()
                cls = status_class(status, payload) if status != 200 else ""
                ctype = upstream.headers.get("content-type", "application/json")
                if status != 200 and (own := adapter.error_payload(status, payload)) is not None:
                    payload, ctype = own, "application/json"  # e.g. Bedrock's {"message"} -> its dialect's error
                if xl:
                    out, ctype = xl.response(status, payload), "application/json"
                else:
                    out = payload
                self._note(rec, dep, status, cls, started)
                if cls in plan.retryable:
                    return _Outcome(status, cls, True, retry_after_s(upstream.headers, self._clock()), out, ctype, extra)
                rec.first_byte_s = self._clock()
                rec.status, rec.error_class = status, cls
                if status == 200:
                    rec.usage = _usage_of(xl.provider if xl else ep.dialect, payload)  # the provider's own report
                rec.response_bytes = len(out)
                resp.send(status, ctype, out, [*extra, *route_headers(rec.route_rule, rec.attempts)])
                return _OK if status == 200 else _Outcome(status, cls, False)
        except (TimeoutError, GatewayError) as exc:
            if resp.started or (isinstance(exc, GatewayError) and exc.kind not in _UPSTREAM_KINDS):
                raise
            err = exc if isinstance(exc, GatewayError) else GatewayError(
                504, ErrorKind.TIMEOUT, f"provider {prov.name!r} did not answer within {plan.attempt_timeout_s:g}s")
            cls = exception_class(exc)
            self._note(rec, dep, err.status, cls, started)
            return _Outcome(err.status, cls, cls in plan.retryable, exc=err)

    def _note(self, rec: RequestRecord, dep: RuntimeDeployment, status: int, cls: str, started: float) -> None:
        m = dep.model
        rec.attempts.append(AttemptRecord(m.provider.name, dep.id, m.upstream_name, status, cls,
                                          int((self._monotonic() - started) * 1000)))

    def _nothing_tried(self, rec: RequestRecord, planner: AttemptPlanner) -> GatewayError:
        if planner.skipped_open:
            names = ", ".join(d.id for d in planner.skipped_open)
            now = self._monotonic()
            waits = [b.retry_in(now) for d in planner.skipped_open if (b := self.breakers.get(d.id, d.breaker))]
            wait = max(1, math.ceil(min(waits, default=1)))  # until the first circuit lets a probe through
            return GatewayError(503, ErrorKind.OVERLOADED, f"every deployment for model {rec.requested_model!r} is "
                                f"failing (circuit open: {names}); retry in {wait}s", (("retry-after", str(wait)),))
        team = rec.key.team_id if rec.key else ""
        limits = planner.constraint.describe() if planner.constraint is not None else "allowed regions/providers"
        return GatewayError(403, ErrorKind.PERMISSION, f"team {team!r} may not reach any deployment of model "
                            f"{rec.requested_model!r} (team limits: {limits}); "
                            "ask your platform team for a model that runs where you are allowed")

    async def _relay_stream(
        self, upstream: UpstreamResponse, resp: Responder, scanner: StreamUsageScanner, rec: RequestRecord,
        extra: list[tuple[str, str]], first: bytes, chunks: AsyncIterator[bytes],
    ) -> None:
        decoded = isinstance(scanner, DecodingScanner)  # e.g. Bedrock: event-stream in, SSE out
        resp.start_stream(200, "text/event-stream" if decoded else upstream.headers.get("content-type", "text/event-stream"),
                          extra)
        try:
            if first:  # read before the response started (see _attempt); the rest is the plain relay loop
                rec.first_byte_s = self._clock()
                out = scanner.feed(first)
                if resp.disconnected:
                    rec.client_disconnected = True
                else:
                    await resp.write(out)
            if not rec.client_disconnected:
                async for chunk in chunks:
                    if not rec.first_byte_s:
                        rec.first_byte_s = self._clock()
                    out = scanner.feed(chunk)
                    if resp.disconnected:
                        rec.client_disconnected = True
                        break  # leaving the context closes the upstream connection: the provider stops generating
                    await resp.write(out)
        finally:
            rec.usage = scanner.usage if scanner.usage.reported else _estimate(rec, scanner.usage, scanner.events)
            rec.response_bytes = resp.bytes_sent
        resp.end_stream()

    @staticmethod
    def _record_model(rec: RequestRecord, m: RuntimeModel) -> None:
        rec.model, rec.provider, rec.upstream_model = m.name, m.provider.name, m.upstream_name
        rec.price = m.price
        rec.price_version = m.price.version

def _parse_body(raw: bytes) -> dict[str, Any]:
    if not raw:
        raise bad_request("the request body is empty; send a JSON object")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"the request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    return body


def _usage_of(dialect: Dialect, payload: bytes) -> Usage:
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return Usage()
    return dialect.usage_from_body(body) if isinstance(body, dict) else Usage()
