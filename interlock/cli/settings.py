"""The CLI's settings: which admin API to talk to, as whom."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from interlock_contracts.settings.common import _get, _secret


@dataclass(frozen=True)
class CliSettings:
    admin_url: str = "http://127.0.0.1:8081"
    admin_token: str = field(default="", repr=False)
    actor: str = ""  # sent as X-Interlock-Actor: an unverified "on behalf of" note in the audit log; default: OS user

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> CliSettings:
        env = os.environ if env is None else env
        tok = _secret(env, "ADMIN_TOKEN")
        return cls(admin_url=_get(env, "ADMIN_URL", cls.admin_url, str), admin_token=tok.decode() if tok else "",
                   actor=_get(env, "ACTOR", env.get("USER", "") or env.get("LOGNAME", ""), str))
