"""Load generators: wrk (closed loop, peak throughput) and vegeta (open loop, latency at a fixed rate)."""

from __future__ import annotations

import base64
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from .procs import BenchError, run_pinned

_WORDS = ("refactor the parser so that the tokenizer handles unicode escapes; keep the public API stable and add "
          "tests for \"quoted\" identifiers,\ttabs and line\nbreaks. def main(argv: list[str]) -> int: return 0 ")


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    model: str  # what the client requests from the gateway (an alias)
    stream: bool
    request_bytes: int
    bar_rps: float
    direct_headers: dict[str, str] = field(default_factory=dict)  # what the gateway's provider config adds upstream

    def body(self) -> bytes:
        """A chat request of about `request_bytes`: system prompt, history and a user message padded with text."""
        msgs = [{"role": "system", "content": "You are a coding agent."}, {"role": "user", "content": ""}]
        req: dict[str, object] = {"model": self.model, "messages": msgs, "max_tokens": 256, "temperature": 0}
        if self.stream:
            req["stream"] = True
        overhead = len(orjson.dumps(req))
        text, need = "", max(0, self.request_bytes - overhead)
        while len(orjson.dumps(text)) - 2 < need:
            text += _WORDS
        while len(orjson.dumps(text)) - 2 > need:
            text = text[:-1]
        msgs[1]["content"] = text
        return orjson.dumps(req)


@dataclass
class Point:
    """One load run against one target."""

    rps: float = 0.0
    p50_ms: float = 0.0
    p90_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    requests: int = 0
    non_2xx: int = 0
    socket_errors: int = 0
    cpu: dict[str, float] = field(default_factory=dict)  # percent of one core, per process

    @property
    def failed(self) -> int:
        return self.non_2xx + self.socket_errors


_WRK_LUA = """\
local f = assert(io.open("{body}", "rb"))
wrk.body = f:read("*a")
f:close()
wrk.method = "POST"
{headers}
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {{"requests":%.0f,"duration_us":%.0f,"connect":%.0f,"read":%.0f,"write":%.0f,"status":%.0f,' ..
    '"timeout":%.0f,"p50":%.0f,"p90":%.0f,"p99":%.0f,"max":%.0f}}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


def _lua_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_wrk_script(path: Path, body_path: Path, headers: dict[str, str]) -> Path:
    lines = "\n".join(f"wrk.headers[{_lua_str(k)}] = {_lua_str(v)}" for k, v in headers.items())
    path.write_text(_WRK_LUA.format(body=body_path, headers=lines))
    return path


def run_wrk(core: int, url: str, script: Path, seconds: float, connections: int) -> tuple[Point, str, float]:
    """(figures, raw wrk output, wrk CPU seconds)."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise BenchError("wrk not found: run scripts/install-bench-tools.sh")
    argv = [wrk, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", "--timeout", "5s",
            "-s", str(script), url]
    out, cpu_s = run_pinned(core, argv, timeout_s=seconds + 30)
    line = next((ln for ln in out.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        raise BenchError(f"wrk printed no summary:\n{out}")
    d = orjson.loads(line[len("WRKJSON "):])
    us = 1000.0
    pt = Point(
        rps=d["requests"] / (d["duration_us"] / 1e6), p50_ms=d["p50"] / us, p90_ms=d["p90"] / us,
        p99_ms=d["p99"] / us, max_ms=d["max"] / us, requests=int(d["requests"]), non_2xx=int(d["status"]),
        socket_errors=int(d["connect"] + d["read"] + d["write"] + d["timeout"]),
    )
    return pt, out, cpu_s


def vegeta_binary(repo: Path) -> str:
    for cand in (repo / ".cache/bench/bin/vegeta", shutil.which("vegeta"), Path.home() / "go/bin/vegeta"):
        if cand and os.access(cand, os.X_OK):
            return str(cand)
    raise BenchError("vegeta not found: run scripts/install-bench-tools.sh")


def write_vegeta_target(path: Path, url: str, body: bytes, headers: dict[str, str]) -> Path:
    target = {"method": "POST", "url": url, "body": base64.b64encode(body).decode(),
              "header": {k: [v] for k, v in headers.items()}}
    path.write_bytes(orjson.dumps(target) + b"\n")
    return path


def run_vegeta(vegeta: str, core: int, target: Path, rate: int, seconds: float, out: Path) -> tuple[Point, float]:
    """Open loop: `rate` requests/s whatever the latency; (figures, vegeta CPU seconds)."""
    secs = max(1, round(seconds))
    attack = [vegeta, "attack", "-format=json", f"-targets={target}", f"-rate={rate}/1s", f"-duration={secs}s",
              "-timeout=10s", f"-output={out}"]
    _, cpu_s = run_pinned(core, attack, timeout_s=secs + 30)
    report, _ = run_pinned(core, [vegeta, "report", "-type=json", str(out)], timeout_s=60)
    r = orjson.loads(report)
    lat = r["latencies"]
    ns = 1e6
    codes = {int(k): int(v) for k, v in (r.get("status_codes") or {}).items()}
    ok = sum(v for k, v in codes.items() if 200 <= k < 300)
    pt = Point(
        rps=float(r["throughput"]), p50_ms=lat["50th"] / ns, p90_ms=lat["90th"] / ns, p99_ms=lat["99th"] / ns,
        max_ms=lat["max"] / ns, requests=int(r["requests"]), non_2xx=sum(v for k, v in codes.items() if k and k // 100 != 2),
        socket_errors=codes.get(0, 0),
    )
    if ok + pt.failed != pt.requests:
        pt.socket_errors += pt.requests - ok - pt.failed
    return pt, cpu_s
