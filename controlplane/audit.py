"""The control-plane audit log: one durable record per policy change (apply, key create, key revoke).

Records are written by StorePolicyService IN THE SAME atomic commit as the change
they describe, so a change without its record (or a record without its change)
cannot exist; a rejected, conflicting or no-op write leaves no record.

Storage: `{prefix}/audit/{base_version:020d}-{uuid}` (see store/layout.py). The
base version is the policy version the write was guarded on; every successful
guarded commit moves the version forward, so base versions strictly increase and
the keys sort chronologically. The resulting version is not known before the
commit, so it is not stored in the value: it is the record's mod_revision, which
equals the policy version the commit produced (records are never rewritten).

Masking happens at write time (and again on read, for records written by hand):
key hashes and secrets are dropped everywhere, and provider `headers` values are
masked when the header name or the value looks like a credential.

Retention: records are never rewritten or deleted by Interlock. They are ordinary
live keys, so etcd compaction (which drops old *revisions*) never removes them;
growth is one key per change (a few hundred bytes to a few KiB each). Delete old
records under `{prefix}/audit/` deliberately if the log must be bounded.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from pydantic import ValidationError

from .errors import ControlPlaneError
from .service_types import Actor, AuditAction, Change, PolicyAuditRecord
from .store.base import KV, Entry
from .store.layout import AUDIT

log = logging.getLogger(__name__)

MASK = "***"
HIDDEN_FIELDS = frozenset({"key_hash", "secret"})
# Past this the record keeps what changed (section/name/action) but not the before/after values, so a
# huge apply is never refused because of its audit record (etcd's default request limit is 1.5 MiB).
MAX_RECORD_BYTES = 256 * 1024
MAX_ACTOR_LEN = 128
_SENSITIVE_NAME = re.compile(r"auth|key|token|secret|passw|cookie|signature|credential|session", re.IGNORECASE)
_SECRET_VALUE = re.compile(
    r"^(bearer|basic|token|digest)\s+\S+"  # an Authorization-style value
    r"|^(sk|pk|rk|xox[abpr]|ghp|gho|ghs|glpat)[-_]\S{8,}|^AKIA[0-9A-Z]{16}$"  # well-known key prefixes
    r"|^(?=[A-Za-z0-9+/=_.-]{24,}$)(?=.*[0-9])(?=.*[A-Za-z]).*$",  # long, mixed, token-like
    re.IGNORECASE,
)
_SINCE = re.compile(r"^(\d+)\s*([mhdw])$")
_UNIT_MS = {"m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 7 * 86_400_000}
SINCE_FORMAT = "a number and a unit: 30m, 24h, 7d, 2w"


class AuditQueryInvalid(ControlPlaneError):
    status = 422


# -- masking ----------------------------------------------------------------------------


def looks_secret(name: str, value: object) -> bool:
    return bool(_SENSITIVE_NAME.search(name)) or (isinstance(value, str) and bool(_SECRET_VALUE.match(value.strip())))


def mask_item(section: str, item: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A stored item as it may appear in the audit log: no hashes or secrets, secret-looking headers masked."""
    if item is None:
        return None
    out = {k: v for k, v in item.items() if k not in HIDDEN_FIELDS}
    headers = out.get("headers")
    if isinstance(headers, Mapping):
        out["headers"] = {h: MASK if looks_secret(str(h), v) else v for h, v in headers.items()}
    return out


def clean_actor(raw: str | None, default: str) -> str:
    """A name as recorded: printable, single-line, bounded."""
    actor = "".join(ch for ch in (raw or "") if ch.isprintable()).strip()[:MAX_ACTOR_LEN]
    return actor or default


def _claim(raw: str) -> str:
    """A client-declared name; masked if it looks like a credential (someone pasted a token as their name)."""
    claim = clean_actor(raw, "")
    return MASK if claim and _SECRET_VALUE.match(claim) else claim


# -- building and keys ------------------------------------------------------------------


def build_record(
    *, action: AuditAction, actor: str | Actor, changes: Iterable[Change], base_version: int, now_ms: int,
    subject: str = "",
) -> PolicyAuditRecord:
    masked = [
        Change(c.section, c.name, c.action, mask_item(c.section, c.before), mask_item(c.section, c.after))
        for c in changes
    ]
    who = actor if isinstance(actor, Actor) else Actor(actor)
    return PolicyAuditRecord(id=uuid.uuid4().hex, at_unix_ms=now_ms, actor=clean_actor(who.name, "unknown"),
                             actor_role=who.role, actor_verified=True,
                             on_behalf_of_unverified=_claim(who.on_behalf_of),
                             action=action, subject=subject, base_version=base_version, changes=masked)


def record_key(record: PolicyAuditRecord) -> str:
    """Zero-padded so lexical order is numeric order; the uuid keeps hand-made records from colliding."""
    return f"{AUDIT}{record.base_version:020d}-{record.id}"


def encode_record(record: PolicyAuditRecord) -> bytes:
    """Canonical JSON without `version`; values are dropped (not the change list) if it would be too big."""
    data = record.model_dump(mode="json", exclude={"version"})
    raw = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    if len(raw) <= MAX_RECORD_BYTES:
        return raw
    slim = record.model_copy(update={
        "values_omitted": True,
        "changes": [replace(c, before=None, after=None) for c in record.changes],
    })
    return json.dumps(slim.model_dump(mode="json", exclude={"version"}), sort_keys=True, separators=(",", ":")).encode()


# -- reading back -----------------------------------------------------------------------


def parse_since(text: str | None, now_ms: int) -> int | None:
    """'7d' -> the unix ms 7 days before now; None/'' -> None (no lower bound)."""
    if not text:
        return None
    m = _SINCE.match(text.strip().lower())
    if not m or int(m[1]) <= 0:
        raise AuditQueryInvalid(f"invalid since {text!r}: use {SINCE_FORMAT}")
    return now_ms - int(m[1]) * _UNIT_MS[m[2]]


def decode_record(key: str, entry: Entry) -> PolicyAuditRecord | None:
    try:
        record = PolicyAuditRecord.model_validate_json(entry.value)
    except ValidationError as exc:
        log.warning("ignoring unreadable audit record %s: %s", key, exc.errors()[:1])
        return None
    changes = [replace(c, before=mask_item(c.section, c.before), after=mask_item(c.section, c.after))
               for c in record.changes]
    return record.model_copy(update={"version": entry.mod_revision, "changes": changes})


async def read_policy_log(kv: KV, since_ms: int | None, limit: int) -> list[PolicyAuditRecord]:
    """Newest first, at most `limit`, only records at or after `since_ms` (None = all).

    Reads the whole audit prefix (the KV contract has no limited or reverse range read): fine for
    tens of thousands of changes; beyond that add a reverse, limited range read to the KV."""
    if limit < 1:
        raise AuditQueryInvalid(f"limit must be at least 1, got {limit}")
    entries, _ = await kv.get_prefix(AUDIT)
    out: list[PolicyAuditRecord] = []
    for key in sorted(entries, reverse=True):
        record = decode_record(key, entries[key])
        if record is None or (since_ms is not None and record.at_unix_ms < since_ms):
            continue
        out.append(record)
        if len(out) == limit:
            break
    return out
