"""The policy snapshot content hash, shared by the control plane (which sets it)
and the data plane (which verifies it), so the two can never drift apart.

The hash is built so a delta can update it in O(change) (docs/incremental-snapshots.md):

    content_hash = sha256("interlock-state-v2" | body digest | sum of resource digests mod 2^256)

- body: the snapshot with version, content_hash, created_unix_ms and every keyed resource cleared,
  deterministically encoded and hashed (the small, rarely changing part: providers, models, teams...);
- keyed resources (virtual keys, budget_policy.budgets, budget_policy.rate_limits): each hashes on its own
  (kind, id and encoding), and the digests are summed, so the result does not depend on order and adding,
  changing or removing one resource is one subtraction and one addition. A sum, not XOR, so two equal
  resources never cancel out.

Caveat for proto evolution: a node parsing a snapshot from a newer control plane re-serializes unknown
fields after the known ones, so a new field only keeps hashes compatible if its number is the highest in
its message.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from google.protobuf.message import Message

from interlock_contracts.v1 import policy_pb2

MOD = 1 << 256
_SCHEME = b"interlock-state-v2\0"
KIND_KEY = "key"
KIND_BUDGET = "budget"
KIND_RATE = "rate_limit"
_EXCLUDED = ("version", "content_hash", "created_unix_ms")


def resource_digest(kind: str, message: Message) -> int:
    """The digest of one keyed resource, as an integer to be summed."""
    h = hashlib.sha256(kind.encode() + b"\0" + message.SerializeToString(deterministic=True))
    return int.from_bytes(h.digest(), "big")


def body_of(snapshot: policy_pb2.PolicySnapshot) -> policy_pb2.PolicySnapshot:
    """A copy of the snapshot without version, hash, creation time and keyed resources."""
    body = policy_pb2.PolicySnapshot()
    for field, value in snapshot.ListFields():
        if field.name in _EXCLUDED or field.name == "keys":
            continue
        if field.name == "budget_policy":
            bp = body.budget_policy
            bp.CopyFrom(value)
            bp.ClearField("budgets")
            bp.ClearField("rate_limits")
            continue
        if field.is_repeated:
            getattr(body, field.name).extend(value)
        elif field.message_type is not None:
            getattr(body, field.name).CopyFrom(value)
        else:
            setattr(body, field.name, value)
    return body


def body_digest(body: policy_pb2.PolicySnapshot) -> str:
    return hashlib.sha256(body.SerializeToString(deterministic=True)).hexdigest()


def combine(body_hex: str, total: int) -> str:
    return hashlib.sha256(_SCHEME + body_hex.encode() + (total % MOD).to_bytes(32, "big")).hexdigest()


def keyed_resources(snapshot: policy_pb2.PolicySnapshot) -> Iterable[tuple[str, str, Message]]:
    """(kind, id, message) of every keyed resource in the snapshot."""
    for k in snapshot.keys:
        yield KIND_KEY, k.id, k
    for b in snapshot.budget_policy.budgets:
        yield KIND_BUDGET, b.id, b
    for r in snapshot.budget_policy.rate_limits:
        yield KIND_RATE, r.id, r


def snapshot_content_hash(snapshot: policy_pb2.PolicySnapshot) -> str:
    """The content hash of a whole snapshot (version, content_hash and created_unix_ms excluded, so that
    recompiling identical policy at a new store revision yields the same hash)."""
    total = sum(resource_digest(kind, msg) for kind, _, msg in keyed_resources(snapshot))
    return combine(body_digest(body_of(snapshot)), total)
