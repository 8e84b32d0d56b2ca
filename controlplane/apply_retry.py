"""A policy apply that survives concurrent mints (issue 16).

`apply` commits guarded on the global version key, and every mint rewrites it: with 100,000 keys and 10 mints/s
an apply that re-read everything after each Conflict would never win the race. After a Conflict this re-reads only
what changed since the apply's read (KV.changes_since: etcd's watch history, the embedded store's tombstones):

- only virtual keys changed (mints, key creates, revokes): each changed key is validated against the document
  being applied (KeyCompiler, O(change), as the publisher does), and the same plan is committed again, guarded
  on the newer version. The section plan is unchanged: keys are not part of it.
- anything else changed (another policy edit, an unreadable key): Conflict reaches the caller as before, so two
  operators' edits never silently overwrite each other.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from pydantic import ValidationError

from .errors import Conflict, PolicyInvalid, StoreUnavailable
from .policy.incremental import KeyCompiler
from .policy.model import KeyRecord, PolicyDocument
from .store.base import KV, Changes
from .store.layout import KEYS, POLICY, VERSION_KEY, StoredState, item_key

log = logging.getLogger(__name__)
KEY_PREFIX = item_key(KEYS, "")


@dataclass
class KeyCatchUp:
    """The keys changed since an apply's read, accumulated over its retries."""

    doc: PolicyDocument
    state: StoredState
    puts: dict[str, KeyRecord] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    _compiler: KeyCompiler | None = None

    async def advance(self, kv: KV) -> int:
        """Take in what changed since the last read; return the version to guard the next commit on.
        Raises Conflict when something other than keys changed, or the change history is not available."""
        changes_since = getattr(kv, "changes_since", None)
        if changes_since is None:
            raise Conflict("the policy changed concurrently; retry with fresh state")
        try:
            changes: Changes = await changes_since(POLICY, self.state.revision, ())
        except StoreUnavailable as exc:
            raise Conflict(f"the policy changed concurrently and its changes cannot be read ({exc}); retry") from exc
        version = self.state.version
        for key, entry in changes.puts.items():
            if key == VERSION_KEY:
                version = max(version, entry.mod_revision)
                continue
            if not key.startswith(KEY_PREFIX):
                raise Conflict(f"the policy changed concurrently ({key}); retry with fresh state")
            try:
                record = KeyRecord.model_validate_json(entry.value)
            except ValidationError as exc:
                raise Conflict(f"{key} changed concurrently and is unreadable; retry with fresh state") from exc
            self.puts[record.id] = record
            self.deleted.discard(record.id)
        for key in changes.deleted:
            if not key.startswith(KEY_PREFIX):
                raise Conflict(f"the policy changed concurrently ({key} deleted); retry with fresh state")
            key_id = key.removeprefix(KEY_PREFIX)
            self.puts.pop(key_id, None)
            self.deleted.add(key_id)
        self.state.revision = max(self.state.revision, changes.revision)
        self.state.version = version
        await self._validate()
        return version

    async def _validate(self) -> None:
        if self._compiler is None:  # O(all keys) once per apply, off the loop; then O(change) per retry
            self._compiler = await asyncio.to_thread(KeyCompiler, self.doc, self.state.keys)
        if errors := self._compiler.errors(self.puts, self.deleted):
            raise PolicyInvalid(errors)
