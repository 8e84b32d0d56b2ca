"""The upstream: nginx serving recorded OpenAI responses to POSTs, pinned to the load core.

The recorded bodies and the nginx.conf come from interlock.fakeprovider.recorded (the
same renderers as the live fake provider). Stream vs non-stream is chosen by the
`x-fake-stream: 1` request header; nginx answers POST to a static file with 405,
which the conf turns into a 200 with `error_page 405 =200 $uri`.
"""

from __future__ import annotations

import http.client
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from interlock.fakeprovider import recorded

from .procs import BenchError, Procs, free_port, pinned

CHAT_PATH = "/v1/chat/completions"
STREAM_HEADER = recorded.STREAM_HEADER


@dataclass(frozen=True)
class Upstream:
    port: int
    pid: int
    stream_chunks: int  # content chunks in the recorded stream
    nonstream_bytes: int
    stream_bytes: int


def _nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if found is None:
        raise BenchError("nginx not found: run scripts/install-bench-tools.sh")
    return found


def start_nginx(procs: Procs, work: Path, core: int) -> Upstream:
    files = recorded.write_recorded_responses(work / "recorded")
    port = free_port()
    prefix = work / "nginx"
    prefix.mkdir(parents=True, exist_ok=True)
    # One worker: the upstream must be cheap, not parallel; the CPU sample shows it has headroom.
    # As root, workers would drop to `nobody`, who cannot read the 0700 temp dir: keep them as root.
    user = "root" if os.geteuid() == 0 else None
    conf = prefix / "nginx.conf"
    conf.write_text(recorded.nginx_conf(files[recorded.OPENAI_CHAT].parent, port, user=user, workers="1"))
    argv = [_nginx_binary(), "-p", f"{prefix}/", "-c", str(conf), "-e", "stderr", "-g", "daemon off;"]
    p = procs.start("nginx", pinned(core, argv))
    stream_body = files[recorded.OPENAI_CHAT_STREAM].read_bytes()
    up = Upstream(
        port=port, pid=p.pid, stream_chunks=recorded.STREAM_TOKENS,
        nonstream_bytes=files[recorded.OPENAI_CHAT].stat().st_size, stream_bytes=len(stream_body),
    )
    _wait_and_verify(up, procs)
    return up


def post(port: int, body: bytes, headers: dict[str, str], path: str = CHAT_PATH) -> tuple[int, bytes]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("POST", path, body=body, headers={"content-type": "application/json", **headers})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def _wait_and_verify(up: Upstream, procs: Procs) -> None:
    """nginx must answer POSTs (small and 100 KB bodies) with 200 and the right recorded body."""
    deadline = time.monotonic() + 10
    while True:
        procs.check_alive()
        try:
            status, body = post(up.port, b'{"model":"x"}', {})
            break
        except OSError:
            if time.monotonic() > deadline:
                raise BenchError(f"nginx did not start listening on {up.port}:\n{procs.log_tail('nginx')}") from None
            time.sleep(0.05)
    if status != 200 or orjson.loads(body).get("object") != "chat.completion":
        raise BenchError(f"nginx answered POST with {status} (the 405 -> 200 rewrite is not working): {body[:200]!r}")
    status, body = post(up.port, b'{"model":"x","pad":"' + b"x" * 100_000 + b'"}', {})
    if status != 200 or len(body) != up.nonstream_bytes:
        raise BenchError(f"nginx answered a 100 KB POST with {status}")
    status, body = post(up.port, b'{"model":"x","stream":true}', {STREAM_HEADER: "1"})
    if status != 200 or not body.rstrip().endswith(b"data: [DONE]") or b'"usage":{' not in body:
        raise BenchError(f"nginx did not serve the recorded SSE stream ({status}): {body[-200:]!r}")
