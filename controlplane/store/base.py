"""The revisioned key-value contract every policy store implements.

Semantics follow etcd, so the embedded store can stand in for it in dev mode:

- One store-wide revision counter; every write (commit, ephemeral put) bumps it.
- Every key carries the revision that last modified it (`mod_revision`); an
  absent key has mod revision 0, which is how "create only if absent" is said.
- Keys are relative to the store's prefix; implementations prepend it.
- Only `controlplane.errors` exceptions cross this boundary: a store that
  cannot be reached raises StoreUnavailable, a failed compare raises Conflict.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Entry:
    value: bytes
    mod_revision: int


@dataclass(frozen=True, slots=True)
class Changes:
    """What changed under a prefix since a revision (KV implementations may offer `changes_since`)."""

    puts: dict[str, Entry]  # created or modified, relative keys
    deleted: set[str]
    revision: int  # store revision of the read


class KV(Protocol):
    async def get(self, key: str) -> Entry | None:
        """The live value of one key, or None."""
        ...

    async def get_prefix(self, prefix: str) -> tuple[dict[str, Entry], int]:
        """Every live key under `prefix` and the store revision of that consistent read."""
        ...

    async def commit(self, puts: Mapping[str, bytes], deletes: Iterable[str] = (), *,
                     if_revision_of: Mapping[str, int] | None = None) -> int:
        """Apply puts and deletes atomically and return the new store revision.

        `if_revision_of` maps keys to the mod revision they must still have (0 =
        must not exist); if any differs nothing is written and Conflict is raised.
        A commit without writes only checks the compares and returns the current revision.
        """
        ...

    def watch_prefix(self, prefix: str, start_revision: int = 0) -> AsyncIterator[int]:
        """Yield store revisions at which something under `prefix` changed, strictly
        after `start_revision` (0 = from now). Bursts may be coalesced into their last
        revision. Never raises for outages: it reconnects, and if history was lost
        (compaction) it yields the current revision so the caller re-reads."""
        ...

    async def put_ephemeral(self, key: str, value: bytes, ttl_s: float) -> None:
        """Put a key that disappears unless put again within `ttl_s` (node liveness)."""
        ...

    async def put_ephemeral_many(self, values: Mapping[str, bytes], ttl_s: float) -> None:
        """put_ephemeral for many keys in one store round trip (every node's liveness, issue 16)."""
        ...

    async def close(self) -> None: ...


def prefix_end(prefix: str) -> str:
    """The smallest string greater than every string starting with `prefix` (etcd's range_end)."""
    for i in range(len(prefix) - 1, -1, -1):
        if ord(prefix[i]) < 0x10FFFF:
            return prefix[:i] + chr(ord(prefix[i]) + 1)
    return "\U0010ffff"  # unreachable for real prefixes; keeps the function total


def join_root(root: str, key: str) -> str:
    """`root` is the deployment prefix ("/interlock"); keys hang below it with one slash."""
    return f"{root.rstrip('/')}/{key}"
