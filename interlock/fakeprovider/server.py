"""App factory and runner. Everything lives on the app instance: no module globals,
so several fake providers can run side by side in one test process."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

from . import admin, cloud, handlers
from .config import FakeProviderConfig
from .handlers import STATE
from .state import ProviderState

CLIENT_MAX_SIZE = 64 * 1024 * 1024  # agent transcripts get large; aiohttp's default is 1 MiB


class PathOnlyAccessLogger(AbstractAccessLogger):
    """aiohttp's default format logs the query string, which can carry a Gemini `?key=`."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        self.logger.info("%s %s %s %.1fms", request.method, request.path, response.status, time * 1000)


def create_app(config: FakeProviderConfig | None = None) -> web.Application:
    app = web.Application(client_max_size=CLIENT_MAX_SIZE)
    app[STATE] = ProviderState(config or FakeProviderConfig())
    handlers.add_routes(app)
    cloud.add_routes(app)  # Azure, Vertex, Bedrock URL shapes
    admin.add_routes(app)
    return app


def state_of(app: web.Application) -> ProviderState:
    return app[STATE]


async def start_fake_provider(
    config: FakeProviderConfig | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    access_log: logging.Logger | None = None,
) -> tuple[web.AppRunner, str]:
    """Start serving; returns the runner (call `await runner.cleanup()`) and the base URL
    with the actually bound port (port=0 picks a free one)."""
    app = create_app(config)
    runner = web.AppRunner(app, access_log=access_log, access_log_class=PathOnlyAccessLogger, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1]
    url_host = f"[{host}]" if ":" in host else host
    return runner, f"http://{url_host}:{bound}"
