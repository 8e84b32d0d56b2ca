"""How every service reads its settings: INTERLOCK_* variables, *_FILE secrets, actionable errors."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


PREFIX = "INTERLOCK_"


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable to fix."""


def _get(env: Mapping[str, str], name: str, default: T, cast: Callable[[str], T]) -> T:
    raw = env.get(PREFIX + name)
    if raw is None or raw == "":
        return default
    try:
        return cast(raw)
    except ValueError as exc:
        raise SettingsError(f"{PREFIX}{name}={raw!r} is not valid: {exc}") from exc


def _secret(env: Mapping[str, str], name: str) -> bytes | None:
    """A secret from INTERLOCK_<NAME> or the file named by INTERLOCK_<NAME>_FILE."""
    if path := env.get(f"{PREFIX}{name}_FILE"):
        try:
            return Path(path).read_bytes().strip()
        except OSError as exc:
            raise SettingsError(f"{PREFIX}{name}_FILE={path!r} cannot be read: {exc.strerror}") from exc
    value = env.get(PREFIX + name)
    return value.encode() if value else None


def _bool(raw: str) -> bool:
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected true/false")


def _fraction(raw: str) -> float:
    v = float(raw)
    if not 0.0 <= v <= 1.0:
        raise ValueError("must be between 0 and 1 (e.g. 0.01 for 1% of requests)")
    return v


def _path(raw: str) -> Path:
    return Path(raw)


def is_loopback_host(host: str) -> bool:
    """True for addresses only this machine can reach ("localhost", 127.0.0.0/8, ::1)."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a DNS name (or "" / 0.0.0.0 = every interface): assume reachable from the network


def _unreadable(files: Mapping[str, Path | None]) -> str | None:
    """A message for the first configured file (setting name -> path) that is not a readable file."""
    for name, path in files.items():
        if path is not None and not (path.is_file() and os.access(path, os.R_OK)):
            return f"{PREFIX}{name}={str(path)!r} is not a readable file"
    return None


def _cert_key_problem(var_prefix: str, cert: Path | None, key: Path | None, what: str) -> str | None:
    """A certificate is usable only with its key: INTERLOCK_<var_prefix>_CERT and _KEY are set together or not at all."""
    if (cert is None) != (key is None):
        return f"set both {PREFIX}{var_prefix}_CERT and {PREFIX}{var_prefix}_KEY ({what})"
    return None


def target_host(target: str) -> str:
    """The host of a gRPC target "host:port", "dns:///host:port" or "[v6]:port"."""
    rest = target.split("///", 1)[-1]
    host, sep, port = rest.rpartition(":")
    return host if sep and port.isdigit() else rest
