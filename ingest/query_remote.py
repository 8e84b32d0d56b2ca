"""A clickhouse-connect look-alike client that runs queries on `interlock ingest`'s query endpoint.

`UsageQueryService(RemoteQueryClient(url, token))` is the control plane's usage store in the
one-machine shape (ingest owns the chDB directory; see ingest/query_endpoint.py). It implements
the two methods the service uses, `query(sql, parameters=, settings=).result_rows` and `close()`,
so every question runs the same builder and row-typing code as against chDB or a ClickHouse server.
Transport failures raise a retryable IngestError; refusals carry the endpoint's message.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from ingest.clickhouse_writer import IngestError
from ingest.query_wire import PATH, decode_rows


@dataclass(frozen=True)
class RemoteResult:
    result_rows: list[tuple[Any, ...]]


class RemoteQueryClient:
    def __init__(self, url: str, token: str, *, timeout_s: float = 30.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        if not token:
            raise IngestError("the ingest query endpoint needs a token (INTERLOCK_USAGE_STORE_TOKEN)")
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {token}"},
                                  timeout=httpx.Timeout(timeout_s, connect=5.0), transport=transport)

    def query(self, sql: str, parameters: dict[str, Any] | None = None,
              settings: dict[str, Any] | None = None) -> RemoteResult:
        body = {"sql": sql, "parameters": parameters or {}, "settings": settings or {}}
        try:
            r = self._http.post(PATH, json=body)
        except httpx.HTTPError as exc:
            raise IngestError(f"the ingest query endpoint at {self.url} is unreachable ({exc}): is "
                              "`interlock ingest` running with INTERLOCK_INGEST_QUERY_TOKEN set?",
                              retryable=True) from exc
        if r.status_code != 200:
            try:
                err = r.json()["error"]
                message, code = str(err["message"]), err.get("code")
            except (ValueError, KeyError, TypeError):
                message, code = r.text[:200], None
            raise IngestError(f"ingest query endpoint {self.url}: HTTP {r.status_code}: {message}",
                              retryable=r.status_code in (502, 503, 504), code=code if isinstance(code, int) else None)
        rows: Sequence[Sequence[Any]] = r.json()["rows"]
        return RemoteResult(decode_rows(rows))

    def close(self) -> None:
        self._http.close()
