"""A policy snapshot held as indexed resources, so deltas apply, diff and hash in O(change).

Shared by the control plane (which diffs consecutive states into PolicyDelta messages) and the data plane
(which applies them): both sides compute the same content hash (interlock_contracts/snapshot_hash.py) from the same
structure, which is how a node proves it holds exactly the control plane's state.

Keyed resources: virtual keys, budget_policy.budgets and budget_policy.rate_limits (the parts that grow with
the number of keys: a run key carries its own implicit budget and concurrency limit). Every other top-level
field is a "section" replaced whole when it changes, so fields other issues add need no code here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, MutableMapping
from dataclasses import dataclass, field

from google.protobuf.message import Message

from interlock_contracts.snapshot_hash import (
    KIND_BUDGET,
    KIND_KEY,
    KIND_RATE,
    MOD,
    body_digest,
    body_of,
    combine,
    keyed_resources,
    resource_digest,
)
from interlock_contracts.v1 import control_pb2, policy_pb2

# kind -> (PolicyDelta upsert field, PolicyDelta removed field)
DELTA_FIELDS = {
    KIND_KEY: ("upsert_keys", "removed_keys"),
    KIND_BUDGET: ("upsert_budgets", "removed_budgets"),
    KIND_RATE: ("upsert_rate_limits", "removed_rate_limits"),
}
_NOT_SECTIONS = frozenset({"version", "content_hash", "created_unix_ms", "keys"})


class DeltaMismatch(ValueError):
    """A delta does not apply to this state (wrong base) or does not produce the hash it claims."""


@dataclass
class SnapshotState:
    version: int = 0
    content_hash: str = ""
    created_unix_ms: int = 0
    body: policy_pb2.PolicySnapshot = field(default_factory=policy_pb2.PolicySnapshot)
    body_hex: str = ""
    resources: dict[str, dict[str, Message]] = field(default_factory=lambda: {k: {} for k in DELTA_FIELDS})
    digests: dict[str, MutableMapping[str, int]] = field(default_factory=lambda: {k: {} for k in DELTA_FIELDS})
    total: int = 0
    unindexed: policy_pb2.PolicySnapshot | None = field(default=None, repr=False)  # from_trusted: index later

    # -- building ---------------------------------------------------------------

    @classmethod
    def from_snapshot(cls, snapshot: policy_pb2.PolicySnapshot, *, reuse: SnapshotState | None = None) -> SnapshotState:
        """Index a full snapshot (O(size)). `reuse`: a previous state whose digests are reused for resources
        with identical encodings (saves the hashing, not the encoding)."""
        body = body_of(snapshot)
        state = cls(version=snapshot.version, content_hash=snapshot.content_hash,
                    created_unix_ms=snapshot.created_unix_ms, body=body, body_hex=body_digest(body))
        for kind, ident, msg in keyed_resources(snapshot):
            if ident in state.resources[kind]:
                raise DeltaMismatch(f"snapshot lists {kind} {ident!r} more than once")
            state.resources[kind][ident] = msg
            old = reuse.resources[kind].get(ident) if reuse else None
            d = reuse.digests[kind][ident] if reuse and old is not None and old == msg else resource_digest(kind, msg)
            state.digests[kind][ident] = d
            state.total += d
        state.total %= MOD
        return state

    @classmethod
    def from_trusted(cls, snapshot: policy_pb2.PolicySnapshot, total: int) -> SnapshotState:
        """A snapshot whose resource digests are known to sum to `total` (dataplane/snapshot/state_sum.py: this node
        verified these exact bytes before): no hashing, and the per-resource index is built by index() (a
        thread after boot, or the first apply), not before serving. The caller still checks computed_hash()."""
        body = body_of(snapshot)
        return cls(version=snapshot.version, content_hash=snapshot.content_hash,
                   created_unix_ms=snapshot.created_unix_ms, body=body, body_hex=body_digest(body), total=total % MOD,
                   unindexed=snapshot)

    def index(self) -> None:
        """Index the resources of a from_trusted state (O(resources), no hashing: each digest is computed when a
        delta first touches its resource). Raises DeltaMismatch if an id is listed twice."""
        snapshot = self.unindexed
        if snapshot is None:
            return
        bp = snapshot.budget_policy
        resources: dict[str, dict[str, Message]] = {}
        for kind, items in ((KIND_KEY, snapshot.keys), (KIND_BUDGET, bp.budgets), (KIND_RATE, bp.rate_limits)):
            resources[kind] = {m.id: m for m in items}
            if len(resources[kind]) != len(items):
                raise DeltaMismatch(f"snapshot lists a {kind} more than once")
        self.resources = resources
        self.digests = {kind: _LazyDigests(kind, table) for kind, table in resources.items()}
        self.unindexed = None

    def computed_hash(self) -> str:
        return combine(self.body_hex, self.total)

    def to_snapshot(self) -> policy_pb2.PolicySnapshot:
        """The full snapshot (O(size)); resources sorted by id, as the compiler emits them."""
        self.index()
        snap = policy_pb2.PolicySnapshot()
        snap.CopyFrom(self.body)
        snap.version, snap.content_hash, snap.created_unix_ms = self.version, self.content_hash, self.created_unix_ms
        snap.keys.extend(self.resources[KIND_KEY][i] for i in sorted(self.resources[KIND_KEY]))
        snap.budget_policy.budgets.extend(self.resources[KIND_BUDGET][i] for i in sorted(self.resources[KIND_BUDGET]))
        snap.budget_policy.rate_limits.extend(self.resources[KIND_RATE][i] for i in sorted(self.resources[KIND_RATE]))
        return snap

    # -- diff (control plane) -------------------------------------------------------

    def delta_to(self, new: SnapshotState) -> control_pb2.PolicyDelta:
        """The delta turning this state into `new` (O(size) comparisons, O(change) output)."""
        delta = control_pb2.PolicyDelta(base_version=self.version, version=new.version,
                                        content_hash=new.content_hash, created_unix_ms=new.created_unix_ms)
        for kind, (up_field, rm_field) in DELTA_FIELDS.items():
            old_d, new_d = self.digests[kind], new.digests[kind]
            getattr(delta, up_field).extend(new.resources[kind][i] for i in sorted(new_d) if old_d.get(i) != new_d[i])
            getattr(delta, rm_field).extend(sorted(i for i in old_d if i not in new_d))
        if self.body_hex != new.body_hex:
            for name in section_names():
                if _section_bytes(self.body, name) != _section_bytes(new.body, name):
                    _copy_section(new.body, delta.sections, name)
                    delta.replaced_sections.append(name)
        return delta

    # -- apply (data plane) -------------------------------------------------------

    def apply(self, delta: control_pb2.PolicyDelta, *, fill_hash: bool = False) -> None:
        """Apply in O(delta), or raise DeltaMismatch leaving the state untouched. `fill_hash` (the control
        plane, building a delta): set delta.content_hash to the resulting hash instead of checking it."""
        if delta.base_version != self.version:
            raise DeltaMismatch(f"delta is based on version {delta.base_version}, this node holds {self.version}")
        self.index()
        if delta.version <= self.version:
            raise DeltaMismatch(f"delta goes to version {delta.version}, not newer than {self.version}")
        total = self.total
        staged: list[tuple[str, str, Message | None, int]] = []
        for kind, (up_field, rm_field) in DELTA_FIELDS.items():
            digests = self.digests[kind]
            seen: set[str] = set()
            for msg in getattr(delta, up_field):
                ident = msg.id
                if ident in seen:
                    raise DeltaMismatch(f"delta lists {kind} {ident!r} more than once")
                seen.add(ident)
                d = resource_digest(kind, msg)
                total += d - digests.get(ident, 0)
                staged.append((kind, ident, msg, d))
            for ident in getattr(delta, rm_field):
                if ident in seen:
                    raise DeltaMismatch(f"delta lists {kind} {ident!r} more than once")
                seen.add(ident)
                if ident not in digests:
                    continue  # added and removed again within a composed delta: never held here
                total -= digests[ident]
                staged.append((kind, ident, None, 0))
        body, body_hex = self.body, self.body_hex
        if delta.replaced_sections:
            body = policy_pb2.PolicySnapshot()
            body.CopyFrom(self.body)
            known = set(section_names())
            for name in delta.replaced_sections:
                if name not in known:
                    raise DeltaMismatch(f"delta replaces unknown section {name!r} (upgrade this node)")
                _copy_section(delta.sections, body, name)
            body_hex = body_digest(body)
        total %= MOD
        if fill_hash:
            delta.content_hash = combine(body_hex, total)
        if combine(body_hex, total) != delta.content_hash:
            raise DeltaMismatch(f"content hash mismatch for version {delta.version}: delta claims "
                                f"{delta.content_hash[:12] or '(empty)'}, the resulting state hashes to "
                                f"{combine(body_hex, total)[:12]}")
        for kind, ident, msg, d in staged:
            if msg is None:
                del self.resources[kind][ident], self.digests[kind][ident]
            else:
                self.resources[kind][ident], self.digests[kind][ident] = msg, d
        self.body, self.body_hex, self.total = body, body_hex, total
        self.version, self.content_hash, self.created_unix_ms = delta.version, delta.content_hash, delta.created_unix_ms


class _LazyDigests(MutableMapping[str, int]):
    """Resource digests computed on first use from the resources they describe (SnapshotState.from_trusted)."""

    def __init__(self, kind: str, resources: dict[str, Message]):
        self._kind, self._resources = kind, resources
        self._known: dict[str, int] = {}

    def __getitem__(self, ident: str) -> int:
        d = self._known.get(ident)
        if d is None:
            d = self._known[ident] = resource_digest(self._kind, self._resources[ident])
        return d

    def __contains__(self, ident: object) -> bool:
        return ident in self._resources

    def __setitem__(self, ident: str, digest: int) -> None:
        self._known[ident] = digest

    def __delitem__(self, ident: str) -> None:
        self._known.pop(ident, None)  # apply() removes the resource first

    def __iter__(self) -> Iterator[str]:
        return iter(self._resources)

    def __len__(self) -> int:
        return len(self._resources)


def section_names() -> list[str]:
    """Top-level snapshot fields replaced whole by a delta (every field but version, hash, time and keys)."""
    return [f.name for f in policy_pb2.PolicySnapshot.DESCRIPTOR.fields if f.name not in _NOT_SECTIONS]


def _section_bytes(body: policy_pb2.PolicySnapshot, name: str) -> bytes:
    part = policy_pb2.PolicySnapshot()
    _copy_section(body, part, name)
    return part.SerializeToString(deterministic=True)


def _copy_section(src: policy_pb2.PolicySnapshot, dst: policy_pb2.PolicySnapshot, name: str) -> None:
    f = policy_pb2.PolicySnapshot.DESCRIPTOR.fields_by_name[name]
    dst.ClearField(name)
    if f.is_repeated:
        getattr(dst, name).extend(getattr(src, name))
    elif f.message_type is not None:
        if src.HasField(name):
            getattr(dst, name).CopyFrom(getattr(src, name))
    else:
        setattr(dst, name, getattr(src, name))


def compose(deltas: Iterable[control_pb2.PolicyDelta]) -> control_pb2.PolicyDelta:
    """One delta equivalent to applying `deltas` in order (consecutive: each based on the previous version)."""
    out: control_pb2.PolicyDelta | None = None
    up: dict[str, dict[str, Message]] = {k: {} for k in DELTA_FIELDS}
    rm: dict[str, set[str]] = {k: set() for k in DELTA_FIELDS}
    sections = policy_pb2.PolicySnapshot()
    replaced: list[str] = []
    for d in deltas:
        if out is None:
            out = control_pb2.PolicyDelta(base_version=d.base_version)
        elif d.base_version != out.version:
            raise DeltaMismatch(f"deltas are not consecutive: {out.version} then a delta based on {d.base_version}")
        out.version, out.content_hash, out.created_unix_ms = d.version, d.content_hash, d.created_unix_ms
        for kind, (up_field, rm_field) in DELTA_FIELDS.items():
            for msg in getattr(d, up_field):
                up[kind][msg.id] = msg
                # removed then re-added: an upsert (the node may hold the old one)
                rm[kind].discard(msg.id)
            for ident in getattr(d, rm_field):
                up[kind].pop(ident, None)
                rm[kind].add(ident)
        for name in d.replaced_sections:
            _copy_section(d.sections, sections, name)
            if name not in replaced:
                replaced.append(name)
    if out is None:
        raise ValueError("nothing to compose")
    for kind, (up_field, rm_field) in DELTA_FIELDS.items():
        getattr(out, up_field).extend(up[kind][i] for i in sorted(up[kind]))
        getattr(out, rm_field).extend(sorted(rm[kind]))
    if replaced:
        out.sections.CopyFrom(sections)
        out.replaced_sections.extend(replaced)
    return out
