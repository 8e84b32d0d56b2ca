"""Wire shapes of the admin API.

Responses are built from these models rather than from the stored records so a
field added to `KeyRecord` (or a snapshot's key hashes) can never leak by default:
anything not listed here is not sent.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from interlock_contracts.v1 import policy_pb2

from .policy.model import KeyRecord, PolicyDocument
from .service_types import Change, KeySpec, ModelInfo, NodeStatus

# Never sent, whatever a service puts into a change's before/after.
SECRET_FIELDS = frozenset({"key_hash", "secret"})


class ErrorDetail(BaseModel):
    type: str
    message: str
    errors: list[str] = Field(default_factory=list)


class ErrorOut(BaseModel):
    error: ErrorDetail


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class PolicyOut(BaseModel):
    version: int
    document: PolicyDocument


class ChangeOut(BaseModel):
    section: str
    name: str
    action: Literal["create", "update", "delete"]
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None

    @classmethod
    def of(cls, c: Change) -> ChangeOut:
        return cls(section=c.section, name=c.name, action=c.action, before=_scrub(c.before), after=_scrub(c.after))


def _scrub(d: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if d is None else {k: v for k, v in d.items() if k not in SECRET_FIELDS}


class ApplyOut(BaseModel):
    changes: list[ChangeOut]
    version: int
    dry_run: bool


class KeyCreateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="", max_length=128)
    team: str = ""
    user: str = ""
    project: str = ""
    allowed_models: list[str] = Field(default_factory=list)
    expires_at_unix_ms: int = Field(default=0, ge=0, description="0 = never expires")
    default_tags: dict[str, str] = Field(default_factory=dict)

    def to_spec(self) -> KeySpec:
        return KeySpec(**self.model_dump())


class KeyOut(BaseModel):
    """A virtual key as listed: everything but its hash."""

    id: str
    name: str
    hint: str
    team: str
    user: str
    project: str
    allowed_models: list[str]
    expires_at_unix_ms: int
    revoked: bool
    revoked_at_unix_ms: int
    created_at_unix_ms: int
    default_tags: dict[str, str]
    parent: str
    budget_usd: str = ""  # per-run keys (minted with `interlock keys mint`): lifetime budget
    max_concurrency: int = 0  # per-run keys: concurrency limit
    paused: bool = False  # by the loop breaker (interlock keys resume)
    paused_reason: str = ""
    paused_at_unix_ms: int = 0

    @classmethod
    def of(cls, k: KeyRecord) -> KeyOut:
        return cls.model_validate(k.model_dump(exclude={"key_hash"}))


class KeyList(BaseModel):
    keys: list[KeyOut]


class KeyCreatedOut(KeyOut):
    secret: str = Field(description="The key itself. Returned once, never stored, never shown again.")


class ModelOut(BaseModel):
    name: str
    kind: Literal["model", "alias"]
    provider: str
    upstream: str
    target: str
    input_per_mtok: str
    output_per_mtok: str
    cached_input_per_mtok: str
    cache_write_per_mtok: str = ""
    price_source: str = "policy"
    price_source_url: str = ""
    price_read_on: str = ""

    @classmethod
    def of(cls, m: ModelInfo) -> ModelOut:
        return cls(**{f: getattr(m, f) for f in cls.model_fields})


class ModelList(BaseModel):
    models: list[ModelOut]


class NodeOut(BaseModel):
    node_id: str
    address: str
    version: int
    content_hash: str
    in_sync: bool
    connected: bool
    last_seen_unix_ms: int
    rejected_version: int
    reject_reason: str
    usage_sink: str = Field("", description="INTERLOCK_USAGE_SINK the node runs with; 'none' records no usage")

    @classmethod
    def of(cls, n: NodeStatus, version: int, content_hash: str) -> NodeOut:
        # A node holding the current content is in sync even if the version moved on
        # for a change that compiled to the same snapshot.
        in_sync = n.version >= version or (bool(n.content_hash) and n.content_hash == content_hash)
        return cls(
            node_id=n.node_id, address=n.address, version=n.version, content_hash=n.content_hash, in_sync=in_sync,
            connected=n.connected, last_seen_unix_ms=n.last_seen_unix_ms, rejected_version=n.rejected_version,
            reject_reason=n.reject_reason, usage_sink=n.usage_sink,
        )


class NodeList(BaseModel):
    version: int = Field(description="Version of the current policy snapshot")
    content_hash: str
    server_time_unix_ms: int = Field(description="Lets clients show 'last seen' without trusting their own clock")
    nodes: list[NodeOut]


class SnapshotCounts(BaseModel):
    providers: int
    models: int
    aliases: int
    teams: int
    users: int
    projects: int
    keys: int
    active_keys: int


class SnapshotOut(BaseModel):
    version: int
    content_hash: str
    created_unix_ms: int
    key_hash_scheme: str
    counts: SnapshotCounts

    @classmethod
    def of(cls, s: policy_pb2.PolicySnapshot) -> SnapshotOut:
        counts = SnapshotCounts(
            providers=len(s.providers), models=len(s.models), aliases=len(s.aliases), teams=len(s.teams),
            users=len(s.users), projects=len(s.projects), keys=len(s.keys),
            active_keys=sum(1 for k in s.keys if not k.revoked),
        )
        return cls(
            version=s.version, content_hash=s.content_hash, created_unix_ms=s.created_unix_ms,
            key_hash_scheme=s.key_hash_scheme, counts=counts,
        )
