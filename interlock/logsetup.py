"""Process logging: one format, repeated connection errors collapsed, the effective configuration at start.

When Kafka, the control plane or etcd is down, their clients (aiokafka above all) log the same few warnings
many times a second. RepeatFilter lets the first record of each (logger, level, message template) through
per interval, drops the repeats, and reports how many were dropped on the next one it lets through.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Loggers whose warnings are about a connection to something else (not about requests): rate-limited.
NOISY = ("aiokafka", "kafka", "aetcd", "etcd", "grpc", "dataplane.snapshot.sync", "dataplane.usage.kafka",
         "dataplane.budget.lease_client", "ingest.service", "controlplane.store", "controlplane.nodes")
DEFAULT_REPEAT_S = 10.0


class RepeatFilter(logging.Filter):
    def __init__(self, interval_s: float = DEFAULT_REPEAT_S, *, prefixes: Iterable[str] = NOISY,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._interval = interval_s
        self._prefixes = tuple(prefixes)
        self._clock = clock
        self._seen: dict[tuple[str, int, str], list[float]] = {}  # key -> [window start, suppressed count]

    def filter(self, record: logging.LogRecord) -> bool:
        if self._interval <= 0 or record.levelno < logging.WARNING or not record.name.startswith(self._prefixes):
            return True
        key = (record.name, record.levelno, str(record.msg))
        now = self._clock()
        state = self._seen.get(key)
        if state is not None and now - state[0] < self._interval:
            state[1] += 1
            return False
        if state is not None and state[1]:
            record.msg = f"{record.msg} [repeated {int(state[1])} more times in the last {now - state[0]:.0f}s]"
        self._seen[key] = [now, 0]
        if len(self._seen) > 1000:  # a logger that puts ids in the template: keep the table bounded
            self._seen.clear()
        return True


def configure(level: str, *, repeat_interval_s: float = DEFAULT_REPEAT_S) -> RepeatFilter:
    logging.basicConfig(level=level.upper(), format=FORMAT)
    flt = RepeatFilter(repeat_interval_s)
    for h in logging.getLogger().handlers:
        h.addFilter(flt)
    return flt


def _mask_url(v: str) -> str:
    try:
        parts = urlsplit(v)
    except ValueError:
        return v
    if parts.password is None:
        return v
    netloc = f"{parts.username or ''}:***@{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _shown(f: dataclasses.Field[Any], v: Any) -> str:
    if not f.repr or isinstance(v, bytes) or (
            isinstance(v, str | tuple) and any(w in f.name for w in ("secret", "password", "token", "pepper", "credential"))):
        return "***" if v else "(unset)"
    if isinstance(v, str) and "://" in v:
        return _mask_url(v)
    if isinstance(v, Path):
        return str(v)
    return repr(v) if isinstance(v, str) else str(v)


def describe(settings: object) -> str:
    """`name=value ...` for a settings dataclass, secrets masked (fields with repr=False or a secret-like name,
    passwords in URLs)."""
    if not dataclasses.is_dataclass(settings):
        return repr(settings)
    return " ".join(f"{f.name}={_shown(f, getattr(settings, f.name))}" for f in dataclasses.fields(settings))


def log_effective(log: logging.Logger, what: str, settings: object) -> None:
    log.info("%s effective configuration: %s", what, describe(settings))
