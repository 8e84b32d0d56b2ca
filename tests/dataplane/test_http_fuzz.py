"""Property tests of the HTTP server (hypothesis): generated request streams (valid, split at every byte,
pipelined, malformed) never crash it, never make it serve bytes that were not one valid request, and
always end in a response or a close.

Two levels: the protocol with an in-memory transport (many examples, every split point), and a real node
on loopback in front of the fake provider, where what the provider received is the independent truth.
"""

from __future__ import annotations

import asyncio
import random
import re
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataplane.http.messages import Request, Responder
from dataplane.http.server import HttpConnection
from interlock_contracts.http_limits import HttpLimits
from tests.fixtures.gateway import running_gateway

MALFORMED = [
    b"\x00\x01\x02 garbage\r\n\r\n",
    b"GET /x HTTP/1.1\r\nno colon here\r\n\r\n",
    b"POST /v1/chat/completions HTTP/1.1\r\ncontent-length: -5\r\n\r\n",
    b"POST /v1/chat/completions HTTP/1.1\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST /v1/chat/completions HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
    b"GET / HTTP/9.9\r\n\r\n",
    b"GET /a b c HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1\r\nx-a: 1\r\n" + b"x" * 70_000 + b"\r\n\r\n",
    b"GET /" + b"u" * 9000 + b" HTTP/1.1\r\n\r\n",
]


@st.composite
def valid_request(draw: st.DrawFn) -> tuple[bytes, tuple[str, str, bytes]]:
    """(wire bytes, what the handler must see: method, path, body)."""
    text = draw(st.text(alphabet=st.characters(codec="utf-8"), max_size=40))
    body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": text}]})
    path = draw(st.sampled_from(["/v1/chat/completions", "/v1/messages", "/healthz"]))
    if draw(st.booleans()):  # chunked, split into 1-3 chunks
        cut = draw(st.integers(0, len(body)))
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (body[:cut], body[cut:]) if p)
        wire = b"POST %s HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n%s0\r\n\r\n" % (path.encode(), chunks)
    else:
        wire = b"POST %s HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n%s" % (path.encode(), len(body), body)
    return wire, ("POST", path, body)


segment = st.one_of(valid_request().map(lambda v: ("ok", v)),
                    st.sampled_from(MALFORMED).map(lambda m: ("bad", (m, None))),
                    st.binary(min_size=1, max_size=64).map(lambda b: ("bad", (b"\x00" + b, None))))


class MemoryTransport:
    def __init__(self) -> None:
        self.out = bytearray()
        self.closed = False
        self.protocol: HttpConnection | None = None

    def write(self, data: bytes) -> None:
        assert not self.closed
        self.out += data

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            assert self.protocol is not None
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def is_closing(self) -> bool:
        return self.closed

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.close()  # enough for the property: the server ended the connection

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


def run_stream(pieces: list[bytes]) -> tuple[list[tuple[str, str, bytes]], MemoryTransport]:
    seen: list[tuple[str, str, bytes]] = []

    async def handler(req: Request, resp: Responder) -> None:
        seen.append((req.method, req.path, req.body))
        await asyncio.sleep(0)
        resp.send(200, "application/json", b"{}")

    def on_error(req: Request, resp: Responder, exc: BaseException) -> None:
        raise AssertionError(f"handler failed: {exc!r}")

    async def main() -> MemoryTransport:
        t = MemoryTransport()
        conn = HttpConnection(handler, 1 << 20, on_error, lambda p, s, m: orjson.dumps({"error": m}))
        t.protocol = conn
        conn.connection_made(t)  # type: ignore[arg-type]
        for p in pieces:
            if not t.closed:
                conn.data_received(p)
            await asyncio.sleep(0)
        for _ in range(20):
            await asyncio.sleep(0)
        return t

    loop = asyncio.new_event_loop()
    try:
        return seen, loop.run_until_complete(main())
    finally:
        loop.close()


def expected(segments: list[tuple[str, Any]]) -> tuple[list[tuple[str, str, bytes]], bool]:
    """Valid requests before the first malformed segment, and whether there is a malformed one."""
    ok: list[tuple[str, str, bytes]] = []
    for kind, (_, want) in segments:
        if kind == "bad":
            return ok, True
        ok.append(want)
    return ok, False


def check(segments: list[tuple[str, Any]], pieces: list[bytes]) -> None:
    seen, t = run_stream(pieces)
    want, has_bad = expected(segments)
    assert seen == want  # every served request was exactly one valid request, in order, and none was lost
    statuses = [int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", bytes(t.out))]
    assert statuses[:len(want)] == [200] * len(want)  # each answered, in order, before any refusal
    if has_bad:
        assert t.closed and len(statuses) == len(want) + 1 and 400 <= statuses[-1] < 500


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(segment, min_size=1, max_size=5), st.data())
def test_any_split_of_any_stream(segments: list[tuple[str, Any]], data: st.DataObject) -> None:
    stream = b"".join(wire for _, (wire, _) in segments)
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(stream) - 1)), max_size=8)))
    pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True) if stream[a:b]]
    check(segments, pieces)


@settings(max_examples=25, deadline=None)
@given(st.lists(segment, min_size=1, max_size=3))
def test_every_byte_split(segments: list[tuple[str, Any]]) -> None:
    stream = b"".join(wire for _, (wire, _) in segments)[:4096]  # the 70 KB cases are covered by the test above
    if len(stream) < sum(len(w) for _, (w, _) in segments):
        return
    check(segments, [stream[i:i + 1] for i in range(len(stream))])


def test_limits_hold_under_the_property_harness() -> None:
    """The oversized cases in MALFORMED are refused by the limits, not by accident."""
    _, t = run_stream([MALFORMED[-2]])
    assert t.out.startswith(b"HTTP/1.1 431") and HttpLimits().max_header_bytes < len(MALFORMED[-2])
    _, t = run_stream([MALFORMED[-1]])
    assert t.out.startswith(b"HTTP/1.1 414")


async def test_real_node_forwards_only_valid_requests(fake_provider, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Against a running node: pipelined chat requests with malformed ones in between, split at odd points;
    the fake provider must receive exactly the valid ones before the first malformed segment."""
    rng = random.Random(10)
    async with running_gateway(fake_provider.base_url, tmp_path) as gw:
        for round_ in range(12):
            n_ok = rng.randint(0, 3)
            bodies = [orjson.dumps({"model": "gpt-t", "messages": [{"role": "user", "content": f"r{round_}-{i}"}]})
                      for i in range(n_ok)]
            stream = b"".join(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer %s\r\n"
                              b"content-length: %d\r\n\r\n%s" % (gw.key.encode(), len(b), b) for b in bodies)
            stream += rng.choice(MALFORMED[:7])
            before = len(fake_provider.state.stats.history)
            reader, writer = await asyncio.open_connection("127.0.0.1", gw.node.port)
            pos = 0
            while pos < len(stream):
                step = rng.randint(1, 200)
                writer.write(stream[pos:pos + step])
                await writer.drain()
                pos += step
            got = await asyncio.wait_for(reader.read(), 10)  # a response per request, then the refusal and a close
            writer.close()
            assert got.count(b"HTTP/1.1 200") == n_ok and got.count(b"HTTP/1.1 400") == 1, got[:300]
            received = list(fake_provider.state.stats.history)[before:]
            contents = [orjson.loads(r.to_json()["body"]) if isinstance(r.to_json()["body"], (bytes, str))
                        else r.to_json()["body"] for r in received]
            assert [c["messages"][0]["content"] for c in contents] == [f"r{round_}-{i}" for i in range(n_ok)]

