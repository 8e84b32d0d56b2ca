"""The native upstream client (dataplane.upstream_pool) behind the Upstream facade, against real loopback servers."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import orjson
import pytest

from dataplane.dialects.client_errors import GatewayError
from dataplane.pipeline.upstream import Upstream
from dataplane.upstream_pool import NativeClient
from dataplane.upstream_pool.connection import HIGH_WATER
from interlock.fakeprovider import start_fake_provider

AUTH = ("authorization", "Bearer x")
CHAT = orjson.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]})
CHAT_STREAM = orjson.dumps({"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def fake_url() -> AsyncIterator[str]:
    runner, base = await start_fake_provider()
    yield base + "/v1/chat/completions"
    await runner.cleanup()


async def _upstream(impl: str = "native", pool_size: int = 8, **kw: object) -> Upstream:
    up = Upstream(pool_size=pool_size, connect_timeout_s=2.0, impl=impl, **kw)  # type: ignore[arg-type]
    await up.start()
    return up


def _client(up: Upstream) -> NativeClient:
    assert up._native is not None
    return up._native


class RawServer:
    """A loopback asyncio server running `handler` per connection; counts connections."""

    def __init__(self, handler: Handler, ssl_ctx: ssl.SSLContext | None = None) -> None:
        self.handler, self.ssl_ctx, self.connections = handler, ssl_ctx, 0
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> RawServer:
        async def on_conn(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            self.connections += 1
            try:
                await self.handler(r, w)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                w.close()

        self.server = await asyncio.start_server(on_conn, "127.0.0.1", 0, ssl=self.ssl_ctx)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    def url(self, scheme: str = "http", host: str = "127.0.0.1") -> str:
        assert self.server is not None
        return f"{scheme}://{host}:{self.server.sockets[0].getsockname()[1]}/v1/x"


async def read_request(r: asyncio.StreamReader) -> bytes:
    head = await r.readuntil(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    return head + await r.readexactly(length)


def ok_response(body: bytes = b'{"ok":true}', extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n%s" % (len(body), extra, body)


# --- against the project's fake provider (both implementations must agree)

@pytest.mark.parametrize("impl", ["native", "aiohttp"])
async def test_json_response_and_keep_alive_reuse(fake_url: str, impl: str) -> None:
    up = await _upstream(impl)
    try:
        for _ in range(3):
            async with up.post(fake_url, [AUTH, ("content-type", "application/json")], CHAT, 5.0, "fake") as r:
                assert r.status == 200
                assert r.headers.get("content-type", "").startswith("application/json")
                assert r.headers.get("x-missing") is None
                body = orjson.loads(await r.read())
                assert body["object"] == "chat.completion"
        if impl == "native":
            assert _client(up).pool.opened == 1  # three requests, one connection
            assert _client(up).pool.idle_count() == 1
    finally:
        await up.close()


@pytest.mark.parametrize("impl", ["native", "aiohttp"])
async def test_error_status_body_is_readable(fake_url: str, impl: str) -> None:
    up = await _upstream(impl)
    try:
        async with up.post(fake_url, [AUTH, ("x-fake-status", "429")], CHAT, 5.0, "fake") as r:
            assert r.status == 429
            assert "error" in orjson.loads(await r.read())
            assert r.headers.get("retry-after") is not None
    finally:
        await up.close()


@pytest.mark.parametrize("impl", ["native", "aiohttp"])
async def test_sse_is_delivered_incrementally(fake_url: str, impl: str) -> None:
    up = await _upstream(impl)
    try:
        headers = [AUTH, ("x-fake-chunk-delay-ms", "40"), ("x-fake-output-tokens", "4")]
        arrivals: list[float] = []
        data = b""
        loop = asyncio.get_running_loop()
        async with up.post(fake_url, headers, CHAT_STREAM, 5.0, "fake") as r:
            assert r.status == 200
            assert r.headers.get("content-type", "").startswith("text/event-stream")
            async for chunk in r.content.iter_any():
                arrivals.append(loop.time())
                data += chunk
        assert data.rstrip().endswith(b"data: [DONE]")
        assert len(arrivals) >= 4 and arrivals[-1] - arrivals[0] >= 0.1  # chunks arrived over time, not at the end
        if impl == "native":
            assert _client(up).pool.idle_count() == 1  # chunked body read to its end: reusable
    finally:
        await up.close()


@pytest.mark.parametrize("impl", ["native", "aiohttp"])
async def test_mid_stream_cut_raises_502(fake_url: str, impl: str) -> None:
    up = await _upstream(impl)
    try:
        got = b""
        with pytest.raises(GatewayError) as ei:
            async with up.post(fake_url, [AUTH, ("x-fake-fail-after-chunks", "2")], CHAT_STREAM, 5.0, "fake") as r:
                async for chunk in r.content.iter_any():
                    got += chunk
        assert ei.value.status == 502 and "failed" in ei.value.message
        assert got.startswith(b"data: ")
        if impl == "native":
            assert _client(up).pool.idle_count() == 0 and _client(up).pool.in_use == 0
    finally:
        await up.close()


@pytest.mark.parametrize("impl", ["native", "aiohttp"])
async def test_total_timeout_is_504(fake_url: str, impl: str) -> None:
    up = await _upstream(impl)
    try:
        with pytest.raises(GatewayError) as ei:
            async with up.post(fake_url, [AUTH, ("x-fake-latency-ms", "2000")], CHAT, 0.2, "fake") as r:
                await r.read()
        assert ei.value.status == 504
    finally:
        await up.close()


@pytest.mark.parametrize("impl", ["native", "aiohttp"])
async def test_connection_refused_is_502(impl: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    up = await _upstream(impl)
    try:
        with pytest.raises(GatewayError) as ei:
            async with up.post(f"http://127.0.0.1:{port}/v1/x", [AUTH], CHAT, 2.0, "gone"):
                pass
        assert ei.value.status == 502 and "cannot connect" in ei.value.message
        if impl == "native":
            assert _client(up).pool.in_use == 0
    finally:
        await up.close()


async def test_pool_limit_makes_callers_wait(fake_url: str) -> None:
    up = await _upstream(pool_size=1)
    loop = asyncio.get_running_loop()

    async def one() -> int:
        async with up.post(fake_url, [AUTH, ("x-fake-latency-ms", "100")], CHAT, 5.0, "fake") as r:
            await r.read()
            return r.status

    try:
        t0 = loop.time()
        assert await asyncio.gather(one(), one(), one()) == [200, 200, 200]
        assert loop.time() - t0 >= 0.28  # served one after another
        assert _client(up).pool.opened == 1
        # a caller that cannot get a connection before its deadline times out (504)
        holder = asyncio.create_task(one())
        await asyncio.sleep(0.02)
        with pytest.raises(GatewayError) as ei:
            async with up.post(fake_url, [AUTH], CHAT, 0.03, "fake"):
                pass
        assert ei.value.status == 504
        assert await holder == 200
        assert _client(up).pool.in_use == 0
    finally:
        await up.close()


async def test_leaving_early_closes_the_connection(fake_url: str) -> None:
    up = await _upstream()
    try:
        headers = [AUTH, ("x-fake-chunk-delay-ms", "20"), ("x-fake-output-tokens", "20")]
        async with up.post(fake_url, headers, CHAT_STREAM, 5.0, "fake") as r:
            async for _ in r.content.iter_any():
                break  # the client went away mid-stream
        pool = _client(up).pool
        assert pool.idle_count() == 0 and pool.in_use == 0
        # cancellation while waiting for the stream closes it too
        async def consume() -> None:
            async with up.post(fake_url, headers, CHAT_STREAM, 5.0, "fake") as r:
                async for _ in r.content.iter_any():
                    pass

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert pool.idle_count() == 0 and pool.in_use == 0 and pool.opened == 2
    finally:
        await up.close()


# --- against raw servers: framing, stale connections, backpressure, TLS

async def test_stale_idle_connection_is_replaced() -> None:
    async def answer_then_close(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        w.write(ok_response())
        await w.drain()
        await asyncio.sleep(0.02)  # the server's idle timeout: close the kept-alive connection

    async with RawServer(answer_then_close) as srv:
        up = await _upstream()
        try:
            for _ in range(2):
                async with up.post(srv.url(), [AUTH], CHAT, 2.0, "raw") as r:
                    assert await r.read() == b'{"ok":true}'
                await asyncio.sleep(0.1)
            assert srv.connections == 2 and _client(up).pool.opened == 2
        finally:
            await up.close()


async def test_chunked_response_is_decoded_and_connection_reused() -> None:
    seen: list[bytes] = []

    async def chunked(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while True:
            seen.append(await read_request(r))
            w.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n")
            for part in (b"hello ", b"chunked ", b"world"):
                w.write(b"%x\r\n%s\r\n" % (len(part), part))
                await w.drain()
                await asyncio.sleep(0.01)
            w.write(b"0\r\n\r\n")

    async with RawServer(chunked) as srv:
        up = await _upstream()
        try:
            for _ in range(2):
                async with up.post(srv.url(), [AUTH, ("x-extra", "1")], b"abc", 2.0, "raw") as r:
                    assert await r.read() == b"hello chunked world"
            assert srv.connections == 1
            head = seen[0].lower()
            assert head.startswith(b"post /v1/x http/1.1\r\n") and head.endswith(b"\r\n\r\nabc")
            assert f"host: 127.0.0.1:{srv.url().split(':')[2].split('/')[0]}".encode() in head
            assert b"content-length: 3\r\n" in head and b"accept-encoding: identity" in head
        finally:
            await up.close()


async def test_premature_eof_is_502_and_not_reused() -> None:
    async def short(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten b")
        await w.drain()

    async with RawServer(short) as srv:
        up = await _upstream()
        try:
            with pytest.raises(GatewayError) as ei:
                async with up.post(srv.url(), [AUTH], CHAT, 2.0, "raw") as r:
                    await r.read()
            assert ei.value.status == 502 and "UpstreamDisconnected" in ei.value.message
            assert _client(up).pool.idle_count() == 0
        finally:
            await up.close()


async def test_slow_consumer_gets_backpressure() -> None:
    total = 8 * 1024 * 1024
    block = b"x" * 65536

    async def big(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % total)
        for _ in range(total // len(block)):
            w.write(block)
            await w.drain()
        await r.read(1)  # keep the connection open until the client closes it

    async with RawServer(big) as srv:
        up = await _upstream()
        try:
            sizes: list[int] = []
            async with up.post(srv.url(), [AUTH], CHAT, 10.0, "raw") as r:
                async for chunk in r.content.iter_any():
                    sizes.append(len(chunk))
                    await asyncio.sleep(0.005)  # lagging consumer
            assert sum(sizes) == total
            assert max(sizes) <= HIGH_WATER + 512 * 1024  # reading paused instead of buffering everything
            assert _client(up).pool.idle_count() == 1
        finally:
            await up.close()


def test_header_injection_is_refused() -> None:
    client = NativeClient(pool_size=1, connect_timeout_s=1.0)
    with pytest.raises(ValueError) as ei:
        client.prepare("http://127.0.0.1:1/x", [("x-key", "secret\r\nx-evil: 1")], b"")
    assert "secret" not in str(ei.value)


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


async def test_tls_with_self_signed_certificate(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    sni: list[str | None] = []
    server_ctx.sni_callback = lambda sock, name, ctx: sni.append(name)  # type: ignore[assignment,func-returns-value]

    async def keep_alive(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while True:
            await read_request(r)
            w.write(ok_response(b'{"tls":true}'))
            await w.drain()

    async with RawServer(keep_alive, server_ctx) as srv:
        up = await _upstream(ssl_context=ssl.create_default_context(cafile=str(cert)))
        try:
            for _ in range(2):
                async with up.post(srv.url("https", "localhost"), [AUTH], CHAT, 5.0, "tls") as r:
                    assert r.status == 200 and await r.read() == b'{"tls":true}'
            assert srv.connections == 1 and sni == ["localhost"]
        finally:
            await up.close()
        untrusting = await _upstream()  # default context: the self-signed certificate is refused
        try:
            with pytest.raises(GatewayError) as ei:
                async with untrusting.post(srv.url("https", "localhost"), [AUTH], CHAT, 5.0, "tls"):
                    pass
            assert ei.value.status == 502 and "cannot connect" in ei.value.message
        finally:
            await untrusting.close()
