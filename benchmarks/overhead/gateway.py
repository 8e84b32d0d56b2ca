"""The gateway under test: a policy snapshot on disk, then `interlock dataplane` pinned to its own core.

The node boots from the disk snapshot (INTERLOCK_CONTROL_PLANE=""), so every
request goes through the production path: virtual-key HMAC lookup, team
allowlist, alias resolution, upstream credential injection, usage capture and
one usage event per request (into the `none` sink, which counts and forgets).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from controlplane.policy.compiler import compile_snapshot
from controlplane.policy.guardrails import Guardrail
from controlplane.policy.model import Alias, KeyRecord, Model, PolicyDocument, Price, Provider, Team
from dataplane.snapshot import file as snapshot_file
from interlock_contracts.keys import hash_key, new_key_id, new_secret
from interlock_contracts.settings.dataplane import DataPlaneSettings

from . import REPO
from .procs import BenchError, Procs, free_port, pinned, wait_http
from .upstream import STREAM_HEADER, post

ALIAS = "fast"  # -> bench-gpt on provider "nginx"
STREAM_ALIAS = "fast-stream"  # -> bench-gpt-sse on provider "nginx-sse" (sends x-fake-stream: 1 upstream)
_FALLBACK = Path(__file__).with_name("gateway_main.py")


@dataclass(frozen=True)
class Gateway:
    port: int
    pid: int
    secret: str  # the virtual key, sent as Authorization: Bearer
    launcher: str  # the command that runs the node
    note: str  # workarounds the harness had to apply ("" = none: `interlock dataplane` exactly as briefed)


def write_snapshot(state_dir: Path, upstream_port: int, pepper: bytes, guardrail: bool = False) -> str:
    """Compile the benchmark policy, save it where the node looks, return the virtual key's secret.

    guardrail: add the default guardrail (the secret detectors on every request's input, redact)."""
    base = f"http://127.0.0.1:{upstream_port}/v1"
    price = Price(input="0.15", output="0.60")
    doc = PolicyDocument(
        providers=[
            Provider(name="nginx", kind="openai_compatible", base_url=base, credential="env:BENCH_UPSTREAM_KEY"),
            Provider(name="nginx-sse", kind="openai_compatible", base_url=base, credential="env:BENCH_UPSTREAM_KEY",
                     headers={STREAM_HEADER: "1"}),
        ],
        models=[
            Model(name="bench-gpt", provider="nginx", upstream="gpt-4o-mini", price=price),
            Model(name="bench-gpt-sse", provider="nginx-sse", upstream="gpt-4o-mini", price=price),
        ],
        aliases=[Alias(name=ALIAS, target="bench-gpt"), Alias(name=STREAM_ALIAS, target="bench-gpt-sse")],
        teams=[Team(id="bench", allowed_models=[ALIAS, STREAM_ALIAS], default_tags={"env": "bench"})],
        guardrails=[Guardrail(id="default-secrets", detect=["secrets"], action="redact")] if guardrail else [],
    )
    secret = new_secret()
    key = KeyRecord(id=new_key_id(), key_hash=hash_key(pepper, secret).hex(), team="bench", name="bench")
    snap = compile_snapshot(doc, [key], version=1, now_ms=int(time.time() * 1000))
    snapshot_file.save(state_dir / "snapshot.pb", snap)
    return secret


def _control_plane_off() -> tuple[str, str]:
    """(INTERLOCK_CONTROL_PLANE value that keeps the node off any control plane, note if it is a workaround)."""
    probe = DataPlaneSettings.from_env({"INTERLOCK_KEY_PEPPER": "x", "INTERLOCK_CONTROL_PLANE": ""})
    if probe.control_plane == "":
        return "", ""
    # "" falls back to the default 127.0.0.1:50051, where a developer's control plane may be running and would
    # replace the benchmark's snapshot. A port nobody listens on gives disk snapshot + background reconnects.
    return f"127.0.0.1:{free_port()}", (
        f'INTERLOCK_CONTROL_PLANE="" is read as the default {probe.control_plane}; '
        "pointed the node at a closed port instead (boots from the disk snapshot, retries in the background)")


def _env(state_dir: Path, port: int, pepper: str, control_plane: str, extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "INTERLOCK_CONTROL_PLANE": control_plane, "INTERLOCK_KEY_PEPPER": pepper, "INTERLOCK_DP_STATE_DIR": str(state_dir),
        "INTERLOCK_DP_PORT": str(port), "INTERLOCK_DP_HOST": "127.0.0.1", "INTERLOCK_USAGE_SINK": "none",
        "INTERLOCK_NODE_ID": "bench", "BENCH_UPSTREAM_KEY": "sk-upstream-bench", "PYTHONUNBUFFERED": "1",
        # measure this checkout, whatever checkout the editable install points at
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
    })
    env.update(extra)
    return env


def _check_code_path(env: dict[str, str]) -> None:
    out = subprocess.run([sys.executable, "-c", "import dataplane; print(dataplane.__file__)"], env=env,
                         capture_output=True, text=True, timeout=30, cwd="/").stdout.strip()
    if not out.startswith(str(REPO) + os.sep):
        raise BenchError(f"the gateway would import dataplane from {out or '?'}, not from {REPO}")


def _interlock_cli() -> str:
    exe = Path(sys.executable).with_name("interlock")
    if not exe.exists():
        raise BenchError(f"{exe} not found: install the project (pip install -e .)")
    return str(exe)


def start_gateway(procs: Procs, work: Path, upstream_port: int, core: int, extra_env: dict[str, str] | None = None,
                  *, guardrail: bool = False) -> Gateway:
    state_dir = work / "dataplane"
    pepper = secrets.token_hex(32)
    secret = write_snapshot(state_dir, upstream_port, pepper.encode(), guardrail)
    port = free_port()
    control_plane, cp_note = _control_plane_off()
    env = _env(state_dir, port, pepper, control_plane, extra_env or {})
    _check_code_path(env)
    cli = [_interlock_cli(), "dataplane"]
    p = procs.start("gateway", pinned(core, cli), env=env)
    notes = [cp_note] if cp_note else []
    try:
        wait_http(port, "/readyz", 20, procs)
    except BenchError as exc:
        # `interlock dataplane` cannot serve as shipped: say so loudly, then measure the same node via the fallback.
        reason = procs.log_tail("gateway", 200)
        why = next((ln for ln in reversed(reason.splitlines()) if "Error" in ln), str(exc).splitlines()[0])
        notes.append(f"`interlock dataplane` did not become ready ({why.strip()}); used python -O {_FALLBACK.name}")
        procs.stop(p)
        cli = [sys.executable, "-O", str(_FALLBACK)]  # -O: see gateway_main.py
        p = procs.start("gateway-fallback", pinned(core, cli), env=env)
        wait_http(port, "/readyz", 20, procs)
    gw = Gateway(port=port, pid=p.pid, secret=secret, launcher=" ".join(["taskset -c", str(core), *cli]),
                 note="; ".join(notes))
    _verify(gw)
    return gw


def _verify(gw: Gateway) -> None:
    """One request per scenario must succeed through the full path before any load is applied."""
    auth = {"authorization": f"Bearer {gw.secret}"}
    msg = [{"role": "user", "content": "Say hello to the benchmark harness."}]
    status, body = post(gw.port, orjson.dumps({"model": ALIAS, "messages": msg}), auth)
    if status != 200 or "usage" not in orjson.loads(body):
        raise BenchError(f"gateway non-stream check failed ({status}): {body[:300]!r}")
    status, body = post(gw.port, orjson.dumps({"model": STREAM_ALIAS, "messages": msg, "stream": True}), auth)
    if status != 200 or not body.rstrip().endswith(b"data: [DONE]"):
        raise BenchError(f"gateway stream check failed ({status}): {body[-300:]!r}")
    status, body = post(gw.port, orjson.dumps({"model": ALIAS, "messages": msg}), {"authorization": "Bearer sk-il-wrong"})
    if status != 401:
        raise BenchError(f"gateway accepted a wrong virtual key ({status}): authentication is not on the path")
