#!/usr/bin/env python3
"""Where the gateway spends its CPU under load: py-spy on the node while wrk drives one scenario.

    pip install py-spy
    python benchmarks/profile_gateway.py [nonstream_1k|stream_20|body_100k] [--seconds 15] [--native]

Same setup as dataplane_overhead.py (nginx + wrk on core 1, `interlock dataplane` on
core 0). Writes the collapsed stacks (flamegraph.pl / speedscope input) to
benchmarks/results/ and prints the share of busy samples per component.
--native also samples C frames (GC, syscalls, orjson); py-spy then pauses the
process per sample, so throughput drops but the proportions stay meaningful.
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dataplane_overhead import GATEWAY_CORE, LOAD_CORE, REPO, SCENARIOS, _targets
from overhead.gateway import start_gateway
from overhead.load import write_wrk_script
from overhead.procs import BenchError, Procs, pinned
from overhead.upstream import start_nginx

# A sample belongs to the first rule matching a frame, scanning from the innermost frame outwards.
RULES = [
    ("GC (cyclic collector)", r"^gc_collect|^collect_with_callback"),
    ("usage event: to_event / protobuf", r"to_event|usage_pb2|python_message"),
    ("usage event: new_event_id", r"new_event_id"),
    ("auth: HMAC of the virtual key", r"^authenticate |hash_key|hmac"),
    ("JSON: request body parse", r"_parse_body"),
    ("JSON: usage from response", r"_usage_of|usage_from"),
    ("SSE usage scan / strip", r"Scanner\.feed|SSEBuffer|usage_payloads|without_events|has_usage"),
    ("aiohttp: read upstream body", r"ClientResponse\.read|StreamReader|iter_any|AsyncStreamIterator"),
    ("aiohttp: upstream request (build, send, headers)", r"aiohttp/|Upstream\.post|_AsyncGeneratorContextManager"),
    ("server: response write (incl. send)", r"Responder\.|HttpConnection\.write|header_block|status_line"),
    ("server: httptools parse + Request", r"HttpConnection\.(data_received|on_|_serve)|llhttp|httptools"),
    ("proxy/router own lines", r"dataplane/|interlock/"),
    ("event loop + socket reads", r"uvloop|Runner\.run|^read |^recv"),
]
_IDLE = re.compile(r"^(epoll_p?wait|poll|select|futex|pthread_cond)")


def categorize(raw: Path) -> list[tuple[str, float]]:
    counts: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        frames = stack.split(";")
        if not frames or _IDLE.match(frames[-1]):
            continue
        owner = next((name for f in reversed(frames) for name, rx in RULES if re.search(rx, f)), "other")
        counts[owner] += int(n)
    total = sum(counts.values()) or 1
    return [(name, 100 * n / total) for name, n in counts.most_common()]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenario", nargs="?", default="nonstream_1k", choices=[s.name for s in SCENARIOS])
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--native", action="store_true", help="include C frames (GC, syscalls); slows the gateway")
    ap.add_argument("--guardrail", action="store_true", help="the default guardrail in the snapshot (secrets, redact)")
    ap.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                    help="extra gateway setting, e.g. INTERLOCK_ACCESS_LOG=json (repeatable)")
    ap.add_argument("--tag", default="", help="suffix for the output file name")
    args = ap.parse_args()
    pyspy = shutil.which("py-spy")
    if pyspy is None:
        print("py-spy not found: pip install py-spy", file=sys.stderr)
        return 2
    scen = next(s for s in SCENARIOS if s.name == args.scenario)
    work = Path(tempfile.mkdtemp(prefix="interlock-prof-"))
    suffix = ("-native" if args.native else "") + (f"-{args.tag}" if args.tag else "")
    out = REPO / "benchmarks" / "results" / f"profile-{scen.name}{suffix}.collapsed"
    env = dict(e.split("=", 1) for e in args.env)
    out.parent.mkdir(parents=True, exist_ok=True)
    procs = Procs(work)
    try:
        up = start_nginx(procs, work, LOAD_CORE)
        gw = start_gateway(procs, work, up.port, GATEWAY_CORE, env, guardrail=args.guardrail)
        body = work / "body.json"
        body.write_bytes(scen.body())
        url, headers = _targets(scen, gw, up)["gateway"]
        script = write_wrk_script(work / "load.lua", body, headers)
        secs = round(args.seconds)
        wrk = procs.start("wrk", pinned(LOAD_CORE, ["wrk", "-t1", "-c64", f"-d{secs + 5}s", "-s", str(script), url]))
        time.sleep(2)  # warm up before sampling
        mode = ["--native"] if args.native else ["--nonblocking"]
        subprocess.run([pyspy, "record", "-p", str(gw.pid), "-d", str(secs), "-r", "200", "-f", "raw", "-o", str(out),
                        *mode], check=True, capture_output=True)
        wrk.wait(timeout=secs + 30)
        print(procs.log_tail("wrk", 3))
    except (BenchError, subprocess.CalledProcessError) as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        procs.stop_all()
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{scen.title}: share of busy gateway samples ({out.relative_to(REPO)})")
    for name, pct in categorize(out):
        print(f"  {pct:5.1f}%  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
