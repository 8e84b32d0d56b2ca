#!/usr/bin/env python3
"""CPU cost of the HTTP server's per-request work, this checkout vs another (e.g. main), in one process.

    python benchmarks/http_server_overhead.py --baseline /path/to/other/checkout [--requests 20000] [--rounds 7]

Feeds keep-alive requests (a 1 KB chat body, split as a client's write would arrive) through
dataplane.http.server.HttpConnection with an in-memory transport and a handler that answers at once, and
measures process CPU time per request. The two servers are loaded side by side and run interleaved, so
machine load (shared CI cores) hits both alike; the figure to read is the ratio of the medians. Also times
request_validation.validate and tags.request_tags, which this checkout adds to every proxied request.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import statistics
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson

REPO = Path(__file__).resolve().parent.parent


def _load(root: Path, name: str) -> ModuleType:
    """dataplane/http/*.py of `root` as a separate package `name` (its relative imports resolve inside it)."""
    pkg_dir = root / "dataplane" / "http"
    spec = importlib.util.spec_from_file_location(name, pkg_dir / "__init__.py", submodule_search_locations=[str(pkg_dir)])
    assert spec and spec.loader
    pkg = importlib.util.module_from_spec(spec)
    sys.modules[name] = pkg
    spec.loader.exec_module(pkg)
    return importlib.import_module(f"{name}.server")


class _Transport:
    def __init__(self) -> None:
        self.out = 0

    def write(self, data: bytes) -> None:
        self.out += len(data)

    def close(self) -> None: ...
    def is_closing(self) -> bool: return False
    def can_write_eof(self) -> bool: return True
    def write_eof(self) -> None: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...


def _request() -> bytes:
    body = orjson.dumps({"model": "fast", "messages": [{"role": "user", "content": "x" * 900}], "stream": False})
    return (b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:8080\r\nauthorization: Bearer sk-il-xxxxxxxx\r\n"
            b"content-type: application/json\r\nuser-agent: OpenAI/Python 1.99\r\naccept: application/json\r\n"
            b"content-length: %d\r\n\r\n%s") % (len(body), body)


async def _run(server: ModuleType, n: int) -> float:
    done = asyncio.Event()
    count = 0

    async def handler(req: Any, resp: Any) -> None:
        nonlocal count
        resp.send(200, "application/json", b'{"ok":true}')
        count += 1
        if count == n:
            done.set()

    conn = server.HttpConnection(handler, 32 << 20, lambda *a: None, lambda p, s, m: b"{}")
    conn.connection_made(_Transport())
    req = _request()
    head, _, body = req.partition(b"\r\n\r\n")
    t0 = time.process_time()
    for _ in range(n):
        conn.data_received(head + b"\r\n\r\n")
        conn.data_received(body)
        await asyncio.sleep(0)  # let the connection answer (it pauses reading until then)
    await done.wait()
    return (time.process_time() - t0) / n * 1e6


def _time(fn: Any, n: int) -> float:
    t0 = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - t0) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", type=Path, required=True, help="another checkout (its dataplane/http is measured)")
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    import uvloop

    ours, theirs = _load(REPO, "http_this"), _load(args.baseline.resolve(), "http_base")
    results: dict[str, list[float]] = {"this": [], "baseline": []}
    for _ in range(args.rounds):
        for label, mod in (("baseline", theirs), ("this", ours)):
            results[label].append(uvloop.run(_run(mod, args.requests)))
    base, this = statistics.median(results["baseline"]), statistics.median(results["this"])
    print(f"HTTP server, CPU per request (median of {args.rounds} interleaved rounds of {args.requests}):")
    print(f"  baseline {base:6.2f} us   this {this:6.2f} us   ratio {this / base:.3f}")

    from dataplane.pipeline.request_validation import validate
    from dataplane.pipeline.tags import request_tags

    body = orjson.loads(_request().partition(b"\r\n\r\n")[2])
    headers = {"authorization": "Bearer x", "x-interlock-tags": "task=T-1,step=edit"}
    defaults = {"cost-center": "42", "env": "prod"}
    v = _time(lambda: validate("openai", "chat", body), 200_000)
    t = _time(lambda: request_tags(defaults, headers, body, defaults), 200_000)
    print(f"request_validation.validate: {v:.2f} us/request; tags.request_tags (2 locked defaults + header): "
          f"{t:.2f} us/request")


if __name__ == "__main__":
    main()
