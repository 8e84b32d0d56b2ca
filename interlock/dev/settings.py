"""`interlock dev` settings: data directory and ports."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from interlock_contracts.settings.common import _bool, _get


@dataclass(frozen=True)
class DevSettings:
    data_dir: Path = Path(".interlock")
    host: str = "127.0.0.1"
    port: int = 8080
    admin_port: int = 8081
    grpc_port: int = 50051
    fake_provider_port: int = 9099
    with_usage: bool = True
    usage_flush_ms: int = 200  # the usage WAL is shipped to chDB this often

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DevSettings:
        env = os.environ if env is None else env
        return cls(
            data_dir=_get(env, "DATA_DIR", cls.data_dir, Path),
            host=_get(env, "DP_HOST", cls.host, str),
            port=_get(env, "DP_PORT", cls.port, int),
            admin_port=_get(env, "ADMIN_PORT", cls.admin_port, int),
            grpc_port=_get(env, "GRPC_PORT", cls.grpc_port, int),
            fake_provider_port=_get(env, "FAKE_PROVIDER_PORT", cls.fake_provider_port, int),
            with_usage=_get(env, "DEV_USAGE", cls.with_usage, _bool),
            usage_flush_ms=_get(env, "DEV_USAGE_FLUSH_MS", cls.usage_flush_ms, int),
        )
