"""Embedded, persistent store for the one-command dev mode: sqlite3 in WAL mode.

It keeps etcd's semantics (store revision, per-key mod revision, CAS commits,
leases approximated by an expiry time) so everything above it behaves the same
as in production. Deleted keys stay as tombstones (value NULL) carrying the
revision of their deletion, so a watcher can see deletes by comparing revisions.

All sqlite work runs on one dedicated thread: calls never block the event loop
and are serialised without extra locking. Watchers are woken in-process after
each commit, with a slow poll as a fallback for writes from another process.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from pathlib import Path
from typing import Any, TypeVar

from ..errors import Conflict, StoreUnavailable
from .base import Changes, Entry, join_root, prefix_end

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value BLOB,                 -- NULL = tombstone
    mod_revision INTEGER NOT NULL,
    expires_at REAL             -- NULL = persistent; else unix seconds (ephemeral keys)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS store_revision (id INTEGER PRIMARY KEY CHECK (id = 1), revision INTEGER NOT NULL);
INSERT OR IGNORE INTO store_revision VALUES (1, 1);
"""
_LIVE = "value IS NOT NULL AND (expires_at IS NULL OR expires_at > ?)"


class SqliteKV:
    def __init__(self, path: str | Path, root: str, *, clock: Callable[[], float] = time.time, poll_s: float = 1.0):
        self._path = str(path)
        self._root = root
        self._clock = clock
        self._poll_s = poll_s
        self._db: sqlite3.Connection | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="interlock-sqlite")
        self._wakeups: set[asyncio.Event] = set()
        self._closed = False

    # -- plumbing -------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            if self._path != ":memory:":
                Path(self._path).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                # key HMACs, provider headers, the audit log: owner-only (SQLite gives -wal/-shm the same mode)
                os.close(os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600))
                os.chmod(self._path, 0o600)  # a database created by an earlier version with 0644
            db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False, timeout=5.0)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # WAL+NORMAL survives process crashes, fine for dev
            db.executescript(_SCHEMA)
            self._db = db
        return self._db

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise StoreUnavailable("the embedded store is closed")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"embedded store {self._path}: {exc}") from exc
        except RuntimeError as exc:  # executor shut down under us by close()
            raise StoreUnavailable(f"embedded store {self._path}: {exc}") from exc

    def _k(self, key: str) -> str:
        return join_root(self._root, key)

    def _wake(self) -> None:
        for ev in self._wakeups:
            ev.set()

    # -- reads ----------------------------------------------------------------

    def _get_sync(self, key: str) -> Entry | None:
        row = self._conn().execute(
            f"SELECT value, mod_revision FROM kv WHERE key = ? AND {_LIVE}", (key, self._clock())
        ).fetchone()
        return Entry(row[0], row[1]) if row else None

    async def get(self, key: str) -> Entry | None:
        return await self._run(self._get_sync, self._k(key))

    def _get_prefix_sync(self, start: str) -> tuple[dict[str, Entry], int]:
        db = self._conn()
        db.execute("BEGIN")  # one read transaction: rows and revision from the same state
        try:
            rows = db.execute(
                f"SELECT key, value, mod_revision FROM kv WHERE key >= ? AND key < ? AND {_LIVE}",
                (start, prefix_end(start), self._clock()),
            ).fetchall()
            (rev,) = db.execute("SELECT revision FROM store_revision").fetchone()
        finally:
            db.execute("COMMIT")
        cut = len(self._k(""))
        return {k[cut:]: Entry(v, r) for k, v, r in rows}, rev

    async def get_prefix(self, prefix: str) -> tuple[dict[str, Entry], int]:
        return await self._run(self._get_prefix_sync, self._k(prefix))

    def _changes_sync(self, start: str, since: int) -> Changes:
        db = self._conn()
        db.execute("BEGIN")
        try:
            rows = db.execute(
                "SELECT key, value, mod_revision, expires_at FROM kv WHERE key >= ? AND key < ? AND mod_revision > ?",
                (start, prefix_end(start), since),
            ).fetchall()
            (rev,) = db.execute("SELECT revision FROM store_revision").fetchone()
        finally:
            db.execute("COMMIT")
        cut, now = len(self._k("")), self._clock()
        puts = {k[cut:]: Entry(v, r) for k, v, r, exp in rows if v is not None and (exp is None or exp > now)}
        return Changes(puts, {k[cut:] for k, v, _, exp in rows if k[cut:] not in puts}, rev)

    async def changes_since(self, prefix: str, since: int, known: Collection[str]) -> Changes:
        """Puts and deletes (tombstones) under `prefix` after revision `since`; `known` is not needed here."""
        return await self._run(self._changes_sync, self._k(prefix), since)

    # -- writes ---------------------------------------------------------------

    def _commit_sync(
        self, puts: dict[str, bytes], deletes: list[str], expected: dict[str, int], expires_at: float | None
    ) -> int:
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")  # take the write lock before reading what we compare
        try:
            now = self._clock()
            for key, want in expected.items():
                row = db.execute(f"SELECT mod_revision FROM kv WHERE key = ? AND {_LIVE}", (key, now)).fetchone()
                have = row[0] if row else 0
                if have != want:
                    raise Conflict(f"{key} changed concurrently (revision {have}, expected {want}); retry")
            (rev,) = db.execute("SELECT revision FROM store_revision").fetchone()
            if puts or deletes:
                rev += 1
                db.executemany(
                    "INSERT INTO kv VALUES (?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET "
                    "value = excluded.value, mod_revision = excluded.mod_revision, expires_at = excluded.expires_at",
                    [(k, v, rev, expires_at) for k, v in puts.items()],
                )
                db.executemany(
                    "UPDATE kv SET value = NULL, mod_revision = ?, expires_at = NULL WHERE key = ? AND value IS NOT NULL",
                    [(rev, k) for k in deletes],
                )
                db.execute("UPDATE store_revision SET revision = ?", (rev,))
            db.execute("COMMIT")
            return int(rev)
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    async def commit(self, puts: Mapping[str, bytes], deletes: Iterable[str] = (), *,
                     if_revision_of: Mapping[str, int] | None = None) -> int:
        rev = await self._run(
            self._commit_sync,
            {self._k(k): bytes(v) for k, v in puts.items()},
            [self._k(k) for k in deletes],
            {self._k(k): r for k, r in (if_revision_of or {}).items()},
            None,
        )
        self._wake()
        return rev

    async def put_ephemeral(self, key: str, value: bytes, ttl_s: float) -> None:
        # Expired rows are filtered on read instead of deleted: no revision bump, like a lapsed lease we never see.
        await self._run(self._commit_sync, {self._k(key): bytes(value)}, [], {}, self._clock() + ttl_s)
        self._wake()

    async def put_ephemeral_many(self, values: Mapping[str, bytes], ttl_s: float) -> None:
        if values:
            await self._run(self._commit_sync, {self._k(k): bytes(v) for k, v in values.items()}, [], {},
                            self._clock() + ttl_s)
            self._wake()

    # -- watch ----------------------------------------------------------------

    def _max_revision_sync(self, start: str) -> int:
        (rev,) = self._conn().execute(
            "SELECT COALESCE(MAX(mod_revision), 0) FROM kv WHERE key >= ? AND key < ?", (start, prefix_end(start))
        ).fetchone()
        return int(rev)

    def _revision_sync(self) -> int:
        (rev,) = self._conn().execute("SELECT revision FROM store_revision").fetchone()
        return int(rev)

    async def watch_prefix(self, prefix: str, start_revision: int = 0) -> AsyncIterator[int]:
        start = self._k(prefix)
        wakeup = asyncio.Event()
        self._wakeups.add(wakeup)
        try:
            last = start_revision
            while not self._closed:
                wakeup.clear()  # clear before reading, so a commit racing the read still wakes us
                try:
                    if last == 0:
                        last = await self._run(self._revision_sync)
                        continue
                    rev = await self._run(self._max_revision_sync, start)
                except StoreUnavailable:
                    rev = last
                if rev > last:
                    last = rev
                    yield rev
                    continue
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that races the wakeup.
                with suppress(TimeoutError):
                    async with asyncio.timeout(self._poll_s):
                        await wakeup.wait()
        finally:
            self._wakeups.discard(wakeup)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._wake()

        def _shutdown() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await asyncio.get_running_loop().run_in_executor(self._pool, _shutdown)
        self._pool.shutdown(wait=False)
