"""Where policy lives in the store, and reading it back as one consistent state.

Key layout, relative to the deployment prefix (ControlPlaneSettings.etcd_prefix, "/interlock"):

    {prefix}/policy/{section}/{name}  one declarative item, JSON of its pydantic model.
                                      section: providers | models | aliases | teams | users | projects
                                      name: the item's name (providers, models, aliases) or id (others)
    {prefix}/policy/keys/{key_id}     one virtual key: KeyRecord JSON (hex HMAC only, never the secret)
    {prefix}/policy/version           rewritten by every policy or key transaction. Its mod_revision IS
                                      the snapshot version, and every writer guards its transaction on
                                      it (optimistic concurrency: a racing writer gets Conflict).
    {prefix}/nodes/{node_id}          last known status of a data-plane node (persistent, for `status`)
    {prefix}/live/{node_id}           ephemeral liveness, on a lease/TTL: present = connected
    {prefix}/budget/{kind}/{id}/{w}   budget/rate-limit ledger record per window (controlplane/budget/record.py)
    {prefix}/audit/{base:020d}-{uuid} one policy change (controlplane/audit.py), written in the same
                                      transaction as the change. `base` is the policy version the write
                                      was guarded on, so keys sort chronologically; the record's
                                      mod_revision is the version it produced. Never rewritten; ordinary
                                      keys, so etcd compaction keeps them (it drops old revisions only).

Everything a snapshot is compiled from sits under {prefix}/policy/, so the
publisher watches one prefix and node-status churn (or an audit record) never wakes it. Node writes
leave policy/version alone, so they never bump the snapshot version; deletes of
policy items go through the same transaction as the version key, so they do.
Writers that bypass the service (etcdctl) must also rewrite policy/version,
otherwise nodes get a new content hash under an unchanged version.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from interlock_contracts.v1 import policy_pb2

from ..errors import PolicyInvalid
from ..policy.compiler import compile_snapshot
from ..policy.model import SECTION_TYPES, SECTIONS, KeyRecord, PolicyDocument, record_key
from .base import KV

log = logging.getLogger(__name__)

POLICY = "policy/"
VERSION_KEY = "policy/version"
KEYS = "keys"
NODES = "nodes/"
LIVE = "live/"
AUDIT = "audit/"
HMAC_HEX_RE = re.compile(r"^[0-9a-fA-F]{64}$")


def item_key(section: str, name: str) -> str:
    return f"{POLICY}{section}/{name}"


def encode(model: BaseModel) -> bytes:
    """Canonical JSON, so equal items always have equal bytes."""
    return json.dumps(model.model_dump(mode="json"), sort_keys=True, separators=(",", ":")).encode()


def version_marker(now_ms: int, reason: str) -> bytes:
    """Value of the version key: what last changed the policy, and when (for operators)."""
    return json.dumps({"changed_at_unix_ms": now_ms, "reason": reason}, sort_keys=True).encode()


def _why(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in exc.errors())


@dataclass
class StoredState:
    """The policy as stored at one revision. Unreadable entries are kept aside in `unreadable`/`errors`."""

    sections: dict[str, dict[str, BaseModel]]
    keys: dict[str, KeyRecord]
    version: int  # mod revision of policy/version; 0 = nothing was ever written
    revision: int  # store revision of the read (start point for a watch)
    unreadable: dict[str, dict[str, str]] = field(default_factory=dict)  # section -> name -> why it did not decode

    @property
    def errors(self) -> list[str]:
        return [why for section in sorted(self.unreadable) for why in self.unreadable[section].values()]

    def document(self) -> PolicyDocument:
        return PolicyDocument.model_validate(
            {s: [self.sections[s][n] for n in sorted(self.sections[s])] for s in SECTIONS}
        )

    def dumped(self, section: str) -> dict[str, dict[str, Any]]:
        items = self.keys if section == KEYS else self.sections[section]
        return {name: item.model_dump(mode="json") for name, item in items.items()}


def parse_state(entries: dict[str, Any], revision: int) -> StoredState:
    sections: dict[str, dict[str, BaseModel]] = {s: {} for s in SECTIONS}
    state = StoredState(sections=sections, keys={}, version=0, revision=revision)
    for key in sorted(entries):
        entry = entries[key]
        if key == VERSION_KEY:
            state.version = entry.mod_revision
            continue
        section, _, name = key.removeprefix(POLICY).partition("/")
        model: type[BaseModel] | None = KeyRecord if section == KEYS else SECTION_TYPES.get(section)
        if model is None or not name:
            log.warning("ignoring %s: not part of the policy layout", key)
            continue
        try:
            item = model.model_validate_json(entry.value)
            stored_as = item.id if isinstance(item, KeyRecord) else record_key(section, item)
            if stored_as != name:
                raise ValueError(f"it names itself {stored_as!r}")
            if isinstance(item, KeyRecord) and not HMAC_HEX_RE.match(item.key_hash):
                raise ValueError("key_hash is not a hex HMAC-SHA256")
        except (ValidationError, ValueError) as exc:
            why = _why(exc) if isinstance(exc, ValidationError) else str(exc)
            state.unreadable.setdefault(section, {})[name] = f"stored item {key} is unreadable ({why})"
            continue
        if isinstance(item, KeyRecord):
            state.keys[name] = item
        else:
            sections[section][name] = item
    return state


async def load_state(kv: KV) -> StoredState:
    entries, revision = await kv.get_prefix(POLICY)
    return parse_state(entries, revision)


def compile_state(state: StoredState, now_ms: int) -> policy_pb2.PolicySnapshot:
    """Compile a stored state; PolicyInvalid lists unreadable entries and every validation error."""
    try:
        snapshot = compile_snapshot(state.document(), state.keys.values(), version=state.version, now_ms=now_ms)
    except PolicyInvalid as exc:
        raise PolicyInvalid(state.errors + exc.errors) from exc
    if state.errors:
        raise PolicyInvalid(state.errors)
    return snapshot
