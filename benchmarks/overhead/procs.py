"""Child processes pinned to cores, cleaned up on every exit path; CPU accounting from /proc."""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import os
import resource
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PR_SET_PDEATHSIG = 1


class BenchError(RuntimeError):
    """The benchmark cannot produce a trustworthy figure; the message says why."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: if the harness is SIGKILLed, the child gets SIGTERM.
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def pinned(core: int, argv: Sequence[str]) -> list[str]:
    return ["taskset", "-c", str(core), *argv]


class Procs:
    """Every long-running process the benchmark starts; `stop_all` ends them (and only them)."""

    def __init__(self, log_dir: Path):
        self._log_dir = log_dir
        self._procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, argv: Sequence[str], *, env: dict[str, str] | None = None,
              cwd: Path | None = None) -> subprocess.Popen[bytes]:
        log = open(self._log_dir / f"{name}.log", "wb")  # the child holds its own copy of the fd
        try:
            p = subprocess.Popen(
                list(argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=cwd,
                start_new_session=True, preexec_fn=_die_with_parent,
            )
        finally:
            log.close()
        self._procs.append((name, p))
        return p

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self._log_dir / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def check_alive(self) -> None:
        for name, p in self._procs:
            if p.poll() is not None:
                raise BenchError(f"{name} exited with status {p.returncode}:\n{self.log_tail(name)}")

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        """End one process this object started (and its group), and stop tracking it."""
        _signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            proc.wait(timeout=5)
        self._procs = [(n, p) for n, p in self._procs if p is not proc]

    def stop_all(self, grace_s: float = 5.0) -> None:
        for _, p in reversed(self._procs):
            _signal_group(p, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for _, p in reversed(self._procs):
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(p, signal.SIGKILL)
                p.wait(timeout=5)
        self._procs.clear()


def _signal_group(p: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    # start_new_session=True made the child the leader of its own group: this reaches its workers, nothing else.
    if p.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, sig)


def run_pinned(
    core: int, argv: Sequence[str], *, timeout_s: float, env: dict[str, str] | None = None
) -> tuple[str, float]:
    """Run a load tool to completion on `core`: (stdout, its CPU seconds). Killed with its group on timeout/Ctrl-C."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.Popen(pinned(core, argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                         start_new_session=True, preexec_fn=_die_with_parent)
    try:
        out, err = p.communicate(timeout=timeout_s)
    except BaseException:
        _signal_group(p, signal.SIGKILL)
        p.wait()
        raise
    if p.returncode != 0:
        raise BenchError(f"{argv[0]} failed ({p.returncode}): {err.decode(errors='replace')[-2000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # only waited-for children count: this tool alone
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return out.decode(), cpu_s


def wait_http(port: int, path: str, timeout_s: float, procs: Procs) -> None:
    """Poll GET `path` until it answers 200."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        procs.check_alive()
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", path)
            r = c.getresponse()
            r.read()
            c.close()
            if r.status == 200:
                return
            last = f"status {r.status}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.05)
    raise BenchError(f"127.0.0.1:{port}{path} not ready after {timeout_s}s ({last})")


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = Path(entry.path, "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(entry.name))
    return out


def process_tree(pid: int) -> list[int]:
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo += _children(p)
    return tree


def cpu_ticks(pids: Sequence[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total


def core_ticks() -> dict[int, tuple[int, int]]:
    """core -> (busy, total) jiffies since boot, from /proc/stat."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("cpu") and line[3].isdigit():
            name, *vals = line.split()
            v = [int(x) for x in vals[:8]]  # user nice system idle iowait irq softirq steal
            out[int(name[3:])] = (sum(v) - v[3] - v[4], sum(v))
    return out


@dataclass
class CpuUsage:
    """CPU use over a window in percent of one core: per process tree, and per core (`core0`, ...)."""

    percent: dict[str, float]


@contextlib.contextmanager
def sample_cpu(trees: dict[str, list[int]]) -> Iterator[CpuUsage]:
    usage = CpuUsage({})
    t0 = time.monotonic()
    start = {name: cpu_ticks(pids) for name, pids in trees.items()}
    cores0 = core_ticks()
    yield usage
    wall = time.monotonic() - t0
    cores1 = core_ticks()
    for name, pids in trees.items():
        usage.percent[name] = round(100.0 * (cpu_ticks(pids) - start[name]) / _CLK_TCK / wall, 1) if wall > 0 else 0.0
    for core, (busy1, total1) in cores1.items():
        busy0, total0 = cores0.get(core, (busy1, total1))
        usage.percent[f"core{core}"] = round(100.0 * (busy1 - busy0) / max(1, total1 - total0), 1)
