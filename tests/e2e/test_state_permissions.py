"""Every file and directory the product creates is owner-only (0600/0700): run `interlock dev` as the user
would, serve a request (so usage, snapshots and the policy store are written), stop it, walk the data dir."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx

from dataplane.durable.spool import Spool
from tests.fixtures.cluster import free_port
from tests.fixtures.process import stop_process

REPO = Path(__file__).resolve().parents[2]


def loose(root: Path) -> list[str]:
    bad = []
    for path in [root, *root.rglob("*")]:
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode):
            continue
        if stat.S_IMODE(mode) & 0o077:
            bad.append(f"{path.relative_to(root.parent)} {oct(stat.S_IMODE(mode))}")
    return bad


def test_interlock_dev_creates_only_owner_only_state(tmp_path: Path) -> None:
    data_dir = tmp_path / "dev"
    port, admin = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY")}
    env.update(PYTHONPATH=str(REPO), INTERLOCK_ADMIN_PORT=str(admin), INTERLOCK_GRPC_PORT=str(free_port()),
               INTERLOCK_FAKE_PROVIDER_PORT=str(free_port()))
    proc = subprocess.Popen([sys.executable, "-c", "from interlock.cli.main import main; main()", "dev", "--data-dir", str(data_dir),
                             "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert proc.stdout is not None
        out = b""
        deadline = time.monotonic() + 90
        while b"INTERLOCK_KEY=" not in out and time.monotonic() < deadline and proc.poll() is None:
            out += proc.stdout.readline()
        key = re.search(rb"INTERLOCK_KEY=(\S+)", out)
        assert key, out.decode(errors="replace")[-2000:]
        r = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=20,
                       headers={"authorization": f"Bearer {key.group(1).decode()}"},
                       json={"model": "interlock-dev-gpt", "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200, r.text
        time.sleep(1.5)  # usage flush
    finally:
        stop_process(proc, 20)
    assert (data_dir / "policy.db").exists() and (data_dir / "dataplane" / "snapshot.pb").exists()
    assert loose(data_dir) == []


def test_spool_segments_and_dirs_are_owner_only_even_with_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        spool = Spool(tmp_path / "spool", max_bytes=1 << 20)
        spool.append([b"event"])
        spool.ack(spool.end)
        spool.close()
    finally:
        os.umask(old)
    assert loose(tmp_path / "spool") == []
