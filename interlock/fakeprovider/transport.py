"""Writing responses: JSON bodies, paced event streams, and abrupt connection cuts."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence

import orjson
from aiohttp import web

from .config import RequestOptions

log = logging.getLogger(__name__)
_FLUSH_POLLS = 1000  # ~1 s upper bound on waiting for written bytes to leave before a cut


async def sleep_ms(ms: float) -> None:
    if ms > 0:
        await asyncio.sleep(ms / 1000)


async def cut_connection(request: web.Request) -> None:
    """Reset the connection mid-body, as a crashed or overloaded upstream would.

    Bytes already written are flushed first so the client really sees a
    truncated body (abort() discards anything still buffered).
    """
    transport = request.transport
    if transport is None:
        return
    for _ in range(_FLUSH_POLLS):  # bounded poll: asyncio offers no "buffer empty" event
        if not transport.get_write_buffer_size():
            break
        await asyncio.sleep(0.001)
    transport.abort()


def json_response(payload: object, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, headers=headers, content_type="application/json")


async def send_json(
    request: web.Request, payload: object, opts: RequestOptions, headers: Mapping[str, str]
) -> web.StreamResponse:
    body = orjson.dumps(payload)
    if opts.fail_after_chunks is None:
        return web.Response(body=body, headers=headers, content_type="application/json")
    # A non-streamed body has no chunks: announce the full length, send half, then cut.
    resp = web.StreamResponse(headers=headers)
    resp.content_type = "application/json"
    resp.content_length = len(body)
    await resp.prepare(request)
    await resp.write(body[: len(body) // 2])
    await cut_connection(request)
    return resp


async def send_stream(
    request: web.Request,
    events: Sequence[bytes],
    content_type: str,
    opts: RequestOptions,
    headers: Mapping[str, str],
) -> web.StreamResponse:
    """Write `events` one by one, `chunk_delay_ms` apart; cut after `fail_after_chunks` events."""
    resp = web.StreamResponse(headers={**headers, "cache-control": "no-cache"})
    resp.content_type = content_type.split(";")[0]
    if "charset=" in content_type:
        resp.charset = content_type.split("charset=")[1]
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    try:
        for index, event in enumerate(events):
            if opts.fail_after_chunks is not None and index >= opts.fail_after_chunks:
                await cut_connection(request)
                return resp
            if index:
                await sleep_ms(opts.chunk_delay_ms)
            await resp.write(event)
        await resp.write_eof()
    except ConnectionResetError:  # aiohttp's ClientConnectionResetError too
        # A client that stops reading mid-stream is normal (the gateway cancels, a user hits Ctrl-C):
        # one line, not aiohttp's "Error handling request" traceback.
        log.info("%s %s: client disconnected mid-stream", request.method, request.path)
    return resp
