"""The contract between the policy service and its front ends (admin API, CLI, dev mode)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from interlock_contracts.v1 import policy_pb2

from .policy.model import KeyRecord, PolicyDocument

AuditAction = Literal["apply", "create_key", "revoke_key", "prune_keys", "pause_key", "resume_key"]


@dataclass(frozen=True)
class Change:
    section: str  # "providers", "models", ... or "keys"
    name: str
    action: Literal["create", "update", "delete"]
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None


@dataclass(frozen=True)
class Actor:
    """Who made a change: an authenticated identity (controlplane/admin_auth.py) and the client's unverified
    "on behalf of" claim. Services also accept a plain name for in-process callers (housekeeping, tests)."""

    name: str
    role: str = ""
    on_behalf_of: str = ""


class PolicyAuditRecord(BaseModel):
    """One policy change (controlplane/audit.py writes and reads them). `version` is not stored: it is read back
    from the record's mod revision. `changes` holds the same Change values the service computed, masked."""

    id: str
    at_unix_ms: int
    actor: str  # the authenticated admin identity (or "interlock" for the control plane's own housekeeping)
    actor_role: str = ""  # its role then; "" on records from before named credentials
    # False on records from before named credentials: their actor was the client's claim, not an identity.
    actor_verified: bool = False
    on_behalf_of_unverified: str = ""  # the name the client declared (X-Interlock-Actor); never checked
    action: AuditAction
    subject: str = ""  # the key id for key actions; "" for apply
    base_version: int  # policy version the change was made against
    version: int = 0  # policy version the change produced
    changes: list[Change] = Field(default_factory=list)
    values_omitted: bool = False  # before/after dropped because the record would exceed MAX_RECORD_BYTES


@dataclass(frozen=True)
class ApplyResult:
    changes: list[Change]
    version: int  # store revision after the apply (unchanged when dry_run or no change)
    dry_run: bool


@dataclass(frozen=True)
class CreatedKey:
    record: KeyRecord
    secret: str = field(repr=False)  # shown once to the caller, never stored


@dataclass(frozen=True)
class KeySpec:
    name: str = ""
    team: str = ""
    user: str = ""
    project: str = ""
    allowed_models: list[str] = field(default_factory=list)
    expires_at_unix_ms: int = 0
    default_tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelInfo:
    name: str
    kind: Literal["model", "alias"]
    provider: str
    upstream: str
    target: str  # for aliases: the model it resolves to; for models: itself
    input_per_mtok: str
    output_per_mtok: str
    cached_input_per_mtok: str
    cache_write_per_mtok: str = ""  # "" = the input price
    price_source: str = "policy"  # "policy" | "catalog:<version>" (| "+policy" when figures override it)
    price_source_url: str = ""
    price_read_on: str = ""  # the date the catalog's source page was read


@dataclass(frozen=True)
class NodeStatus:
    node_id: str
    version: int  # last snapshot version the node acknowledged as applied
    content_hash: str
    connected: bool
    last_seen_unix_ms: int
    address: str = ""
    rejected_version: int = 0  # last version the node rejected, with why
    reject_reason: str = ""
    usage_sink: str = ""  # INTERLOCK_USAGE_SINK the node reported; "" = unknown (older node)


class PolicyService(Protocol):
    async def get_document(self) -> tuple[PolicyDocument, int]: ...

    async def apply(self, doc: PolicyDocument, *, dry_run: bool = False, actor: str | Actor = "admin") -> ApplyResult:
        """Make the stored declarative policy equal `doc` (items absent from doc are deleted).
        Raises PolicyInvalid before writing anything if the result would not compile.
        A write is audited as done by `actor`, atomically with the change; dry runs and no-ops are not."""
        ...

    async def create_key(self, spec: KeySpec, *, actor: str | Actor = "admin") -> CreatedKey: ...

    async def list_keys(self) -> list[KeyRecord]: ...

    async def revoke_key(self, key_id: str, *, actor: str | Actor = "admin") -> KeyRecord:
        """Raises NotFound for an unknown id. Revoking twice is not an error (and not audited again)."""
        ...

    async def policy_log(self, since_ms: int | None = None, limit: int = 100) -> list[PolicyAuditRecord]:
        """Audited policy changes, newest first: at most `limit`, at or after `since_ms` (None = all)."""
        ...

    async def list_models(self) -> list[ModelInfo]: ...

    async def node_status(self) -> list[NodeStatus]: ...

    async def current_snapshot(self) -> policy_pb2.PolicySnapshot: ...
