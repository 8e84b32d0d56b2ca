"""The results table (figure, the issue's bar, PASS/SHORT) and the JSON record."""

from __future__ import annotations

import dataclasses
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import orjson

from .load import Point, Scenario

# The foundation issue's bars for a single gateway process on one core.
ADDED_P50_BAR_MS = 1.0
ADDED_P99_BAR_MS = 5.0


def verdict(ok: bool) -> str:
    return "PASS" if ok else "SHORT"


def _cpu(p: Point) -> str:
    c = p.cpu
    return "/".join(f"{c.get(k, 0):.0f}" for k in ("gateway", "nginx", "load", "other0", "other1"))


def _row(cells: list[str], widths: list[int]) -> str:
    return "  ".join(c.rjust(w) if i > 1 else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))


def _table(head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    sep = "-" * (sum(widths) + 2 * (len(widths) - 1))
    return "\n".join([_row(head, widths), sep, *(_row(r, widths) for r in rows)])


def closed_loop_table(results: dict[str, dict[str, Any]], scenarios: list[Scenario]) -> str:
    head = ["scenario", "target", "RPS", "p50 ms", "p99 ms", "max ms", "requests", "non-2xx", "sock err",
            "RPS/gw core", "CPU% gw/nginx/wrk/oth0/oth1", "bar", "verdict"]
    rows = []
    for s in scenarios:
        r = results[s.name]
        g, d = r["gateway"], r["direct"]
        for target, p in (("gateway", g), ("direct", d)):
            bar = f">= {s.bar_rps:,.0f} RPS" if target == "gateway" else ""
            v = f"{r['verdict']} ({g.rps / s.bar_rps:.0%} of bar)" if target == "gateway" else ""
            rows.append([s.title if target == "gateway" else "", target, f"{p.rps:,.0f}", f"{p.p50_ms:.2f}",
                         f"{p.p99_ms:.2f}", f"{p.max_ms:.1f}", f"{p.requests:,}", str(p.non_2xx),
                         str(p.socket_errors), f"{r['rps_per_gw_core']:,.0f}" if target == "gateway" else "",
                         _cpu(p), bar, v])
        rows.append(["", "gw/direct", f"{r['ratio']:.2f}", "", "", "", "", "", "", "", "", "", ""])
    return _table(head, rows)


def open_loop_table(results: dict[str, dict[str, Any]], scenarios: list[Scenario]) -> str:
    head = ["scenario", "target", "rate", "p50 ms", "p90 ms", "p99 ms", "max ms", "requests", "failed",
            "CPU% gw/nginx/vegeta/oth0/oth1", "bar", "verdict"]
    rows = []
    for s in scenarios:
        if s.name not in results:
            continue
        r = results[s.name]
        for target in ("gateway", "direct"):
            p = r[target]
            rows.append([s.title if target == "gateway" else "", target, f"{p.rps:,.0f}/s", f"{p.p50_ms:.2f}",
                         f"{p.p90_ms:.2f}", f"{p.p99_ms:.2f}", f"{p.max_ms:.1f}", f"{p.requests:,}", str(p.failed),
                         _cpu(p), "", ""])
        rows.append(["", "added p50", "", f"{r['added_p50_ms']:+.2f}", "", "", "", "", "", "",
                     f"<= {ADDED_P50_BAR_MS:g} ms", r["verdict_p50"]])
        rows.append(["", "added p99", "", "", "", f"{r['added_p99_ms']:+.2f}", "", "", "", "",
                     f"<= {ADDED_P99_BAR_MS:g} ms", r["verdict_p99"]])
    return _table(head, rows)


def summarize_closed(gateway: Point, direct: Point, s: Scenario) -> dict[str, Any]:
    gw_cpu = gateway.cpu.get("gateway", 0.0)
    return {"gateway": gateway, "direct": direct, "ratio": gateway.rps / direct.rps if direct.rps else 0.0,
            # throughput per core-second the gateway actually got: robust to other load on its core
            "rps_per_gw_core": gateway.rps * 100 / gw_cpu if gw_cpu else 0.0,
            "bar_rps": s.bar_rps, "verdict": verdict(gateway.rps >= s.bar_rps)}


def summarize_open(gateway: Point, direct: Point) -> dict[str, Any]:
    a50, a99 = gateway.p50_ms - direct.p50_ms, gateway.p99_ms - direct.p99_ms
    return {"gateway": gateway, "direct": direct, "added_p50_ms": a50, "added_p99_ms": a99,
            "bar_added_p50_ms": ADDED_P50_BAR_MS, "bar_added_p99_ms": ADDED_P99_BAR_MS,
            "verdict_p50": verdict(a50 <= ADDED_P50_BAR_MS), "verdict_p99": verdict(a99 <= ADDED_P99_BAR_MS)}


def _git(repo: Path, *args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def environment(repo: Path) -> dict[str, Any]:
    return {
        "commit": _git(repo, "rev-parse", "--short", "HEAD"), "dirty": bool(_git(repo, "status", "--porcelain")),
        "python": platform.python_version(), "kernel": platform.release(), "cpus": os.cpu_count(),
        "cpu_model": next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                           if ln.startswith("model name")), ""),
    }


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    raise TypeError


def write_json(out_dir: Path, record: dict[str, Any], suffix: str = "") -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"dataplane_overhead{suffix}-{time.strftime('%Y%m%dT%H%M%S')}.json"
    data = orjson.dumps(record, default=_plain, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
    path.write_bytes(data)
    (out_dir / f"dataplane_overhead{suffix}-latest.json").write_bytes(data)
    return path
