"""Batched UsageEvent writer for ClickHouse: a server over http(s):// or embedded chDB via chdb://.

One `client.insert` per batch with an explicit column list (Native format, no
per-row SQL). Used by the data plane's dev-mode sink and, later, the Kafka
consumer; both get the same rows, schema and dedup behaviour.

chDB notes (clickhouse-connect 1.12 / chdb 4.4): one engine *path* per process.
Any number of clients may share that path (each gets its own handle and lock,
so writers on different threads do not trample each other's session), but
opening a second path while a client is open fails; after every client is
closed another path can be opened. Inserts are written to a temp file and
ingested with INSERT ... FROM INFILE, so a batch costs one file round trip.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import OperationalError

from ingest import schema_check, wire
from ingest.rows import event_to_row, events_to_batch, row_builder
from ingest.schema import DEFAULT_DATABASE, DEFAULT_TTL_DAYS, check_identifier, create_database, migrate
from interlock_contracts.usage_schema import UsageSchema, usage_schema
from interlock_contracts.v1 import usage_pb2

log = logging.getLogger(__name__)

TABLE = "usage_events"


class IngestError(Exception):
    """A ClickHouse connect, migration, query or insert failed.

    `retryable` is True for transport failures (server unreachable, timeout),
    where the same batch may succeed later; False for errors that will repeat
    (schema mismatch, bad data, chDB path already taken).
    """

    def __init__(self, message: str, *, retryable: bool = False, code: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.code = code


@contextmanager
def translate_errors(action: str) -> Iterator[None]:
    """The single place driver exceptions become IngestError."""
    try:
        yield
    except IngestError:
        raise
    except Exception as exc:  # the driver surfaces engine, I/O and encoding failures under many types
        code = getattr(exc, "code", None)
        raise IngestError(
            f"{action} failed: {exc}",
            retryable=isinstance(exc, OperationalError),
            code=code if isinstance(code, int) else None,
        ) from exc


def redact_dsn(dsn: str) -> str:
    """The DSN without its password, for logs and error messages."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = f"{parts.username or ''}:***@{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class ClickHouseWriter:
    """Inserts UsageEvent batches into `<database>.usage_events`. Owns (and closes) its client.

    Not safe for concurrent `insert_events` from several threads; give each
    thread its own writer (on chDB, on the same path).
    """

    def __init__(self, client: Client, database: str = DEFAULT_DATABASE, *, schema: UsageSchema | None = None) -> None:
        self._client = client
        self._database = check_identifier(database)
        self._schema = schema or usage_schema()  # interlock_contracts/usage_schema.py; tests pass one with an extra column
        self._columns = tuple(c.name for c in self._schema.inserted)
        self._to_row = event_to_row if schema is None else row_builder(self._schema)
        # Resolved once: without types clickhouse-connect would DESCRIBE the table on every insert.
        self._column_types = self._describe()
        self._wire_columns = wire.columns(self._schema.message)
        self._wire_settings = wire.settings(self._schema.message)

    @property
    def client(self) -> Client:
        return self._client

    @property
    def database(self) -> str:
        return self._database

    def _describe(self) -> list[str]:
        """The insert's column types, once the tables are checked against the usage schema (ingest.schema_check)."""
        with translate_errors(f"describing {self._database}.{TABLE}"):
            tables = schema_check.read_tables(self._client, self._database)
            if TABLE not in tables:  # the engine's own error (unknown database or table, with its code)
                self._client.query(f"DESCRIBE TABLE {self._database}.{TABLE}")
        problems = schema_check.descriptor_problems(self._schema)
        problems += schema_check.table_problems(self._schema, tables, exact=False)
        if problems:
            raise IngestError(f"the usage schema does not match {self._database}: {'; '.join(problems)} "
                              "(a missing column: run ingest.schema.migrate)")
        if drift := schema_check.table_problems(self._schema, tables):  # e.g. a newer release's column: inserts work
            log.warning("usage store %s differs from this release's usage schema: %s", self._database, "; ".join(drift))
        return [tables[TABLE][c.name][0] for c in self._schema.inserted]

    def insert_events(self, events: Sequence[usage_pb2.UsageEvent], *, dedup_token: str | None = None) -> int:
        """Insert one batch; returns how many events ClickHouse accepted.

        Invalid events (see ingest.rows.InvalidEvent) are logged and skipped,
        so the return value can be lower than len(events). Retrying the same
        batch is safe: ClickHouse drops a block identical to a recent one (or
        one carrying the same `dedup_token`, e.g. a Kafka partition/offset
        range) within the table's deduplication window. Raises IngestError.
        """
        batch = events_to_batch(events, self._to_row)
        if batch.rejected:
            sample = "; ".join(f"{eid or '<no id>'}: {why}" for eid, why in batch.rejected[:5])
            log.warning("usage events rejected: %d of %d in batch (%s)", len(batch.rejected), len(events), sample)
        if not batch.rows:
            return 0
        settings: dict[str, Any] | None = {"insert_deduplication_token": dedup_token} if dedup_token else None
        with translate_errors(f"inserting {len(batch.rows)} rows into {self._database}.{TABLE}"):
            self._client.insert(
                TABLE,
                batch.rows,
                column_names=self._columns,
                database=self._database,
                column_type_names=self._column_types,
                settings=settings,
            )
        return len(batch.rows)

    def insert_wire(self, values: Sequence[bytes], *, dedup_token: str | None = None) -> int:
        """Insert serialized UsageEvents as they are; ClickHouse decodes them (ingest.wire).

        Every value must come from `wire.wire_value` (an eligible event, fixed
        up): nothing is validated here. Same retry/dedup semantics as `insert_events`
        for the same events in the same order. Raises IngestError.
        """
        if not values:
            return 0
        settings = dict(self._wire_settings)
        if dedup_token:
            settings["insert_deduplication_token"] = dedup_token
        with translate_errors(f"inserting {len(values)} protobuf events into {self._database}.{TABLE}"):
            self._client.raw_insert(
                f"{self._database}.{TABLE}", self._wire_columns, wire.frame(values), settings=settings, fmt=wire.FORMAT
            )
        return len(values)

    def close(self) -> None:
        with translate_errors("closing the ClickHouse client"):
            self._client.close()

    def __enter__(self) -> ClickHouseWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def open_clickhouse(
    dsn: str, *, database: str = DEFAULT_DATABASE, ttl_days: int = DEFAULT_TTL_DAYS
) -> ClickHouseWriter:
    """Connect, create the database, migrate, and return a writer. Blocking; raises IngestError.

    `dsn` is e.g. "chdb:///abs/data/dir" (embedded) or "http://user:pw@host:8123".
    The target database is the `database` argument: tables are always
    addressed as `<database>.<table>`, so the DSN should not name one that
    does not exist yet.
    """
    shown = redact_dsn(dsn)
    parts = urlsplit(dsn)
    if parts.scheme == "chdb" and parts.netloc not in ("", "memory"):
        # clickhouse-connect reads chdb://a/b as location "a", database "b": a relative
        # path would silently become another directory and database.
        raise IngestError(f"{shown}: use chdb:///absolute/path (three slashes) or chdb://memory")
    with translate_errors(f"connecting to ClickHouse at {shown}"):
        client = clickhouse_connect.get_client(dsn=dsn)
    try:
        with translate_errors(f"migrating {database} at {shown}"):
            create_database(client, database)
            version = migrate(client, database, ttl_days)
        writer = ClickHouseWriter(client, database)
    except BaseException:
        client.close()  # chDB: a leaked client would keep the engine path locked
        raise
    log.info("usage store ready: %s database=%s schema_version=%d ttl_days=%d", shown, database, version, ttl_days)
    return writer
