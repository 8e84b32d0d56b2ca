"""Test-control endpoints under /_fake/: fault schedule and request statistics.

Open by default (a loopback test tool); bound to FakeProviderConfig.admin_token when one is set, because the
stats show recent prompts. Never counted in the stats.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from .config import FaultRule, OptionError
from .handlers import STATE
from .transport import json_response


def parse_faults(body: Any) -> list[FaultRule]:
    """Accepts one rule object, a list of them, or {"faults": [...]}."""
    if isinstance(body, dict) and "faults" in body:
        body = body["faults"]
    items = body if isinstance(body, list) else [body]
    return [FaultRule.from_json(item) for item in items]


async def get_stats(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return json_response({**state.stats.snapshot(), "faults": state.faults.snapshot()})


async def get_faults(request: web.Request) -> web.Response:
    return json_response({"faults": request.app[STATE].faults.snapshot()})


async def add_faults(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        rules = parse_faults(orjson.loads(await request.read()))
    except (orjson.JSONDecodeError, OptionError) as exc:
        return json_response({"error": {"message": str(exc), "type": "invalid_request_error"}}, 400)
    for rule in rules:
        state.faults.add(rule)
    return json_response({"faults": state.faults.snapshot()})


async def clear_faults(request: web.Request) -> web.Response:
    request.app[STATE].faults.clear()
    return json_response({"faults": []})


async def reset(request: web.Request) -> web.Response:
    state = request.app[STATE]
    state.faults.clear()
    state.stats.reset()
    return json_response({"ok": True})


Handler = Callable[[web.Request], Awaitable[web.Response]]


def _guarded(handler: Handler) -> Handler:
    async def guarded(request: web.Request) -> web.Response:
        token = request.app[STATE].config.admin_token
        if token:
            scheme, _, sent = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(sent.strip().encode(), token.encode()):
                return json_response({"error": {"message": "/_fake needs 'Authorization: Bearer <admin token>'",
                                                "type": "authentication_error"}}, 401)
        return await handler(request)

    return guarded


def add_routes(app: web.Application) -> None:
    app.router.add_get("/_fake/stats", _guarded(get_stats))
    app.router.add_get("/_fake/faults", _guarded(get_faults))
    app.router.add_post("/_fake/faults", _guarded(add_faults))
    app.router.add_delete("/_fake/faults", _guarded(clear_faults))
    app.router.add_post("/_fake/reset", _guarded(reset))
