"""The governed pass-through: authenticate, admit, forward, stream back, capture usage, emit one event."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from dataplane.admission import authenticate, presented_key, resolve
from dataplane.dialects.base import Dialect, ErrorKind, StreamUsageScanner, Usage
from dataplane.gateway_errors import GatewayError, bad_request
from dataplane.http.messages import Request, Responder
from dataplane.policy import CompiledPolicy, Route
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


def _status_class(status: int) -> str:
    if status == 429:
        return "rate_limited"
    if status == 529:
        return "overloaded"
    return "upstream_5xx" if status >= 500 else "upstream_4xx"


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
        node_id: str, clock: Callable[[], float] = time.time, translations: Translations | None = None,
    ):
        self._policy = policy
        self._pepper = pepper
        self._upstream = upstream
        self._sink = sink
        self._node_id = node_id
        self._clock = clock
        self._ids = EventIds()
        self._translations = translations

    async def handle(self, req: Request, resp: Responder, ep: Endpoint) -> None:
        rec = RequestRecord(self._ids, ep.dialect.name, ep.path, len(req.body))
        try:
            await self._forward(req, resp, ep, rec)
        except GatewayError as exc:
            rec.status = exc.status
            rec.error_class = rec.error_class or exc.kind
            if not resp.started:
                resp.send(exc.status, "application/json", ep.dialect.error_body(exc.status, exc.kind, exc.message),
                          (("x-interlock-request-id", rec.event_id), *exc.headers))
            else:
                await resp.write(ep.dialect.stream_error_event(exc.kind, exc.message))
                resp.end_stream()
        finally:
            rec.done_s = self._clock()
            rec.client_disconnected = rec.client_disconnected or resp.disconnected
            if rec.price is not None:
                rec.cost_pico = rec.price.cost_pico(rec.usage)
            self._sink.emit(rec.to_event(self._node_id))

    async def _forward(self, req: Request, resp: Responder, ep: Endpoint, rec: RequestRecord) -> None:
        policy = self._policy()
        if policy is None:
            raise GatewayError(503, ErrorKind.UNAVAILABLE, "this gateway node has no valid policy yet; retry shortly",
                               (("retry-after", "1"),))
        rec.policy_version = policy.version
        key = authenticate(policy, self._pepper, presented_key(req.headers), int(self._clock() * 1000))
        rec.key = key
        rec.tags = key.tags  # what the event carries if the body turns out unusable (not mutated: no copy)
        body = _parse_body(req.body)
        rec.tags = request_tags(key.tags, req.headers, body)
        if key.required_tags and (absent := missing(key.required_tags, rec.tags)):
            raise bad_request(
                f"team {key.team_id!r} requires the tags {', '.join(absent)}: send them as "
                f"'{TAGS_HEADER}: " + ",".join(f"{t}=..." for t in absent) + "'"
            )
        requested = body.get("model")
        if not isinstance(requested, str) or not requested:
            raise bad_request("the request body must name a model, e.g. {\"model\": \"...\"}")
        stream = body.get("stream") is True
        rec.requested_model, rec.stream = requested, stream
        route = resolve(policy, key, requested)
        self._record_route(rec, route)
        prov = route.model.provider
        if prov.unavailable:
            raise GatewayError(503, ErrorKind.UNAVAILABLE, f"model {requested!r} is unavailable on this node: {prov.unavailable}")
        adapter = prov.adapter
        xl: Translation | None = None  # cross-API translation (dataplane/translate/) when the dialects differ
        if adapter.dialect != ep.dialect.name:
            if self._translations is None:
                raise bad_request(f"model {requested!r} is served by a provider speaking the {adapter.dialect} API; "
                                  f"this endpoint speaks {ep.dialect.name} (cross-API translation is not enabled)")
            xl = self._translations.bind(ep.dialect, ep.operation, adapter.dialect, Params(
                requested, stream, int(self._clock()), adapter.kind, route.model.max_output_tokens))
            body = xl.request(body)
        strip_usage = adapter.prepare_body(body, route.model.upstream_name, stream)
        headers = [*prov.headers, *((h, req.headers[h]) for h in adapter.forward_headers if h in req.headers)]
        url = prov.base_url + adapter.paths[xl.operation if xl else ep.operation]
        async with self._upstream.post(url, headers, orjson.dumps(body), prov.timeout_s, prov.name) as upstream:
            extra = [("x-interlock-request-id", rec.event_id)]
            extra += [(h, v) for h in PASSTHROUGH_RESPONSE_HEADERS if (v := upstream.headers.get(h)) is not None]
            rec.status = upstream.status
            if upstream.status != 200:
                rec.error_class = _status_class(upstream.status)
            if stream and upstream.status == 200:
                scanner = xl.scanner() if xl else ep.dialect.stream_scanner(strip_usage)
                await self._relay_stream(upstream, resp, scanner, rec, extra)
                return
            payload = await upstream.read()
            rec.first_byte_s = self._clock()
            if upstream.status == 200:
                rec.usage = _usage_of(xl.provider if xl else ep.dialect, payload)  # the provider's own report
            ctype = upstream.headers.get("content-type", "application/json")
            if xl:
                payload, ctype = xl.response(upstream.status, payload), "application/json"
            rec.response_bytes = len(payload)
            resp.send(upstream.status, ctype, payload, extra)

    async def _relay_stream(
        self, upstream: UpstreamResponse, resp: Responder, scanner: StreamUsageScanner, rec: RequestRecord,
        extra: list[tuple[str, str]],
    ) -> None:
        resp.start_stream(200, upstream.headers.get("content-type", "text/event-stream"), extra)
        try:
            async for chunk in upstream.content.iter_any():
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
    def _record_route(rec: RequestRecord, route: Route) -> None:
        m = route.model
        rec.alias, rec.model, rec.provider, rec.upstream_model = route.alias, m.name, m.provider.name, m.upstream_name
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
