"""Times the console's overview page the way a user gets it: the real /ui app over HTTP on loopback.

Used by benchmarks/finops_queries.py. `serve_console(svc)` mounts the real console app
(controlplane.console: sign-in, sessions, pages, templates) over a UsageQueryService and serves it
with uvicorn from a thread; `http_page_s` signs in with the admin token and times GET /ui/ (every
query of the page, rendered to HTML with the chart data); `browser_page_s` times the same page in
Debian's headless Chromium until console.js has drawn every chart (body[data-charts-ready]).
"""

from __future__ import annotations

import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from controlplane.admin_auth import AdminAuth
from controlplane.console.app import Console, environment
from controlplane.console.data import ConsoleData
from controlplane.console.sessions import SessionStore
from controlplane.console.site import create_console_app
from ingest.query_service import UsageQueryService

TOKEN = "bench-admin-token-" + "x" * 16
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def console_app(svc: UsageQueryService) -> FastAPI:
    async def no_budgets() -> list[Any]:
        return []

    console = Console(service=None, data=ConsoleData(svc), auth=AdminAuth.of(TOKEN.encode(), ()),  # type: ignore[arg-type]
                      pepper=b"", budgets=no_budgets, minter=None, sessions=SessionStore(), env=environment())
    app = FastAPI()
    app.mount("/ui", create_console_app(console))
    return app


@contextmanager
def serve_console(svc: UsageQueryService) -> Iterator[str]:
    """The console over `svc` on a loopback port until the block ends; yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(console_app(svc), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("console server did not start")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def signed_in(base: str) -> httpx.Client:
    h = httpx.Client(base_url=base, timeout=120)
    csrf = re.search(r'name="csrf" value="([^"]+)"', h.get("/ui/login").text)
    if csrf is None or h.post("/ui/login", data={"csrf": csrf[1], "secret": TOKEN}).status_code != 303:
        raise RuntimeError("could not sign in to the console")
    return h


def http_page_s(h: httpx.Client, path: str = "/ui/") -> float:
    t0 = time.perf_counter()
    r = h.get(path)
    took = time.perf_counter() - t0
    if r.status_code != 200 or 'data-chart=' not in r.text:
        raise RuntimeError(f"{path}: HTTP {r.status_code}, not the rendered page")
    return took


class Browser:
    """Headless Chromium with one signed-in page per console (None from `open` without Chromium or Playwright)."""

    def __init__(self, pw: Any, browser: Any) -> None:
        self._pw, self._browser = pw, browser

    @classmethod
    def open(cls) -> Browser | None:
        if not Path(CHROMIUM).exists():
            return None
        try:
            from playwright.sync_api import sync_playwright
        except ImportError:
            return None
        pw = sync_playwright().start()
        return cls(pw, pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]))

    def signed_in(self, base: str) -> Any:
        page = self._browser.new_context().new_page()
        page.goto(f"{base}/ui/login")
        page.fill("input[name=secret]", TOKEN)
        page.click("button[type=submit]")
        page.wait_for_load_state("load")
        return page

    @staticmethod
    def page_s(page: Any, url: str) -> float:
        """Navigation start to every chart drawn."""
        t0 = time.perf_counter()
        page.goto(url, wait_until="load")
        page.wait_for_selector("body[data-charts-ready='1']", state="attached", timeout=120_000)
        return time.perf_counter() - t0

    def close(self) -> None:
        self._browser.close()
        self._pw.stop()
