"""The policy snapshot content hash, shared by the control plane (which sets it)
and the data plane (which verifies it), so the two can never drift apart."""

from __future__ import annotations

import hashlib

from interlock.v1 import policy_pb2


def snapshot_content_hash(snapshot: policy_pb2.PolicySnapshot) -> str:
    """sha256 hex of the deterministic encoding with version, content_hash and created_unix_ms cleared.

    Those three fields are excluded so that recompiling identical policy at a
    new store revision yields the same hash.

    Caveat for proto evolution: a node parsing a snapshot from a newer control
    plane re-serializes unknown fields after the known ones, so a new field
    only keeps hashes compatible if its number is the highest in its message.
    """
    body = policy_pb2.PolicySnapshot()
    body.CopyFrom(snapshot)
    body.version = 0
    body.content_hash = ""
    body.created_unix_ms = 0
    return hashlib.sha256(body.SerializeToString(deterministic=True)).hexdigest()
