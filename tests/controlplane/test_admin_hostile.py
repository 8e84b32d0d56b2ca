"""Admin API against hostile callers: no body is read before the token is checked; no CDN-loaded docs page."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from controlplane.admin_api import create_admin_app
from controlplane.admin_server import serve_admin
from controlplane.service import StorePolicyService
from controlplane.store.embedded import SqliteKV
from tests.fixtures.cluster import free_port

TOKEN = "adm-hostile-test-token"


@pytest.fixture
async def admin_port(tmp_path: Path) -> AsyncIterator[int]:
    kv = SqliteKV(tmp_path / "policy.db", "/interlock")
    app = create_admin_app(StorePolicyService(kv, b"pepper-hostile", time.time), TOKEN.encode())
    port = free_port()
    server, task = await serve_admin(app, "127.0.0.1", port)
    try:
        yield port
    finally:
        server.should_exit = True  # type: ignore[attr-defined]
        await task
        await kv.close()


async def _post_huge(port: int, auth: bytes, path: bytes = b"/admin/v1/policy/apply") -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    # Announces 200 MB and sends 10 bytes: a server that reads the body first never answers.
    writer.write(b"POST %s HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n%s"
                 b"content-length: 200000000\r\n\r\n{\"a\": 1, " % (path, auth))
    await writer.drain()
    try:
        async with asyncio.timeout(3):
            return await reader.readuntil(b"\r\n\r\n")
    finally:
        writer.close()


async def test_unauthenticated_bodies_are_refused_before_they_are_read(admin_port: int) -> None:
    head = await _post_huge(admin_port, b"")
    assert head.startswith(b"HTTP/1.1 401") and b"www-authenticate: Bearer" in head
    head = await _post_huge(admin_port, b"authorization: Bearer wrong-token\r\n")
    assert head.startswith(b"HTTP/1.1 401")
    with pytest.raises(TimeoutError):  # the valid token's request waits for its body, as it should
        await _post_huge(admin_port, b"authorization: Bearer %s\r\n" % TOKEN.encode())


async def test_console_bodies_are_bounded_before_they_are_read(admin_port: int) -> None:
    """The console's forms authenticate by cookie + CSRF (the sign-in form carries its credential in the body),
    so its bodies are bounded by declared length instead of a bearer token."""
    head = await _post_huge(admin_port, b"", path=b"/ui/login")
    assert head.startswith(b"HTTP/1.1 413"), head


async def test_no_swagger_page_from_a_cdn(admin_port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", admin_port)
    for path in (b"/docs", b"/redoc"):
        writer.write(b"GET %s HTTP/1.1\r\nhost: x\r\n\r\n" % path)
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 404"), head
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
    writer.close()
