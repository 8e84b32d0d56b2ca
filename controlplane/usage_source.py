"""Where the control plane reads usage from, in each deployment shape (INTERLOCK_USAGE_STORE).

    chdb:///abs/dir          in-process embedded chDB: only when no other process has the directory open
                             (`interlock dev` does this itself; a chDB directory admits one process)
    ingest+http://HOST:PORT  one machine: `interlock ingest` owns the chDB directory and serves read-only
                             queries on its health port (ingest/query_endpoint.py); the token is
                             INTERLOCK_USAGE_STORE_TOKEN(_FILE) = that ingest's INTERLOCK_INGEST_QUERY_TOKEN
    http(s)://user:pw@host:8123   cluster: a ClickHouse server through clickhouse-connect
    (unset)                  no usage routes data: they answer 503 saying how to configure this

Every shape builds the same SQL (ingest.queries) and types rows with the same UsageQueryService;
only the client that carries the SQL differs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ingest.clickhouse_writer import redact_dsn
from ingest.query_remote import RemoteQueryClient
from ingest.query_service import UsageQueryService
from ingest.schema import DEFAULT_DATABASE
from interlock_contracts.settings.common import PREFIX, SettingsError, _get, _secret

REMOTE_SCHEME = "ingest+"
_SCHEMES = ("chdb", "http", "https", "ingest+http", "ingest+https")


@dataclass(frozen=True)
class UsageSourceSettings:
    store: str = ""
    token: bytes | None = field(default=None, repr=False)
    database: str = DEFAULT_DATABASE

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> UsageSourceSettings:
        env = os.environ if env is None else env
        s = cls(store=_get(env, "USAGE_STORE", "", str), token=_secret(env, "USAGE_STORE_TOKEN"),
                database=_get(env, "USAGE_DATABASE", DEFAULT_DATABASE, str))
        scheme = urlsplit(s.store).scheme
        if s.store and scheme not in _SCHEMES:
            raise SettingsError(f"{PREFIX}USAGE_STORE={redact_dsn(s.store)!r}: use chdb:///dir, "
                                "ingest+http://host:port (interlock ingest) or http(s)://host:8123 (ClickHouse)")
        if scheme.startswith(REMOTE_SCHEME) and not s.token:
            raise SettingsError(f"{PREFIX}USAGE_STORE={s.store} needs {PREFIX}USAGE_STORE_TOKEN(_FILE): the "
                                "INTERLOCK_INGEST_QUERY_TOKEN that `interlock ingest` was started with")
        return s

    def describe(self) -> str:
        return redact_dsn(self.store) if self.store else "not configured (INTERLOCK_USAGE_STORE)"


def open_usage_queries(s: UsageSourceSettings) -> UsageQueryService | None:
    """The query service for the configured store, or None when none is configured."""
    if not s.store:
        return None
    if s.store.startswith(REMOTE_SCHEME):
        client = RemoteQueryClient(s.store[len(REMOTE_SCHEME):], (s.token or b"").decode())
        return UsageQueryService(client, s.database)  # type: ignore[arg-type]  # duck-typed client
    return UsageQueryService.from_dsn(s.store, s.database)
