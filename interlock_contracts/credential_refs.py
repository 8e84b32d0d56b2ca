"""Which credential references (`env:NAME`, `file:/path`) a policy may use.

A provider's credential is read on every data-plane node and sent to the provider's URL, so a reference
is a read primitive on the node: without a rule, whoever may write policy could name the key pepper, a TLS
key or /etc/shadow and have it sent to a URL of their choosing. The control plane refuses such a policy at
`apply` (naming the rule) and each node refuses to resolve it (defence in depth, and for old snapshots).

Rules (the same settings on control plane and data plane):
- INTERLOCK_CREDENTIAL_DIRS: directories `file:` references must lie under (after normalisation; the node
  also resolves symlinks). Default: /run/secrets, /var/run/secrets, /etc/interlock/credentials.
- INTERLOCK_CREDENTIAL_ENV_PREFIXES: prefixes `env:` names must start with, e.g. INTERLOCK_CRED_. When unset,
  any name is accepted except the gateway's own settings (INTERLOCK_* other than INTERLOCK_CRED_*), so
  existing `env:OPENAI_API_KEY` policies keep working; production should set it (see docs/hostile-clients.md).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DIRS = (Path("/run/secrets"), Path("/var/run/secrets"), Path("/etc/interlock/credentials"))
OWN_PREFIX = "INTERLOCK_"
CRED_PREFIX = "INTERLOCK_CRED_"


@dataclass(frozen=True)
class CredentialRules:
    dirs: tuple[Path, ...] = DEFAULT_DIRS
    env_prefixes: tuple[str, ...] = ()  # () = any name but the gateway's own INTERLOCK_* settings

    def problem(self, ref: str) -> str | None:
        """Why `ref` may not be used, naming the rule to change; None if it may."""
        if ref.startswith("env:"):
            name = ref[4:]
            if self.env_prefixes:
                if not name.startswith(self.env_prefixes):
                    return (f"credential {ref!r}: environment variables must start with "
                            f"{' or '.join(self.env_prefixes)} (INTERLOCK_CREDENTIAL_ENV_PREFIXES)")
            elif name.startswith(OWN_PREFIX) and not name.startswith(CRED_PREFIX):
                return (f"credential {ref!r}: the gateway's own settings ({OWN_PREFIX}*) cannot be credentials; "
                        f"use a {CRED_PREFIX}* variable (or set INTERLOCK_CREDENTIAL_ENV_PREFIXES)")
            return None
        if ref.startswith("file:"):
            path = os.path.normpath(ref[5:])
            if not any(_under(path, str(d)) for d in self.dirs):
                return (f"credential {ref!r}: files must be under {', '.join(str(d) for d in self.dirs)} "
                        f"(INTERLOCK_CREDENTIAL_DIRS)")
            return None
        return f"credential {ref!r} must start with env: or file:"

    def resolved_file(self, ref_path: str) -> Path | None:
        """The file a `file:` reference names, symlinks resolved, if it is still under an allowed directory."""
        real = Path(ref_path).resolve()
        return real if any(_under(str(real), str(d.resolve())) for d in self.dirs) else None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> CredentialRules:
        dirs = tuple(Path(p) for p in env.get("INTERLOCK_CREDENTIAL_DIRS", "").split(",") if p.strip())
        prefixes = tuple(p.strip() for p in env.get("INTERLOCK_CREDENTIAL_ENV_PREFIXES", "").split(",") if p.strip())
        return cls(dirs=dirs or DEFAULT_DIRS, env_prefixes=prefixes)


def _under(path: str, directory: str) -> bool:
    directory = directory.rstrip("/") or "/"
    return path == directory or path.startswith(directory if directory == "/" else directory + "/")
