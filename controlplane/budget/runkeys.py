"""Per-run ephemeral keys: the rules that bound a minted key by its parent. Pure: records in, record or errors out.

A run key inherits its parent's team, user, project and tags; it may narrow but never widen the parent's model
allowlist, expiry, budget and concurrency. Its spend also counts against every key-scope budget and rate limit of
its parent (the data plane applies them to both), and revoking the parent revokes it
(controlplane.policy.budgets.revoked_ids).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from ..policy.model import Budget, KeyRecord

MAX_TTL_MS = 30 * 24 * 3600 * 1000  # run keys are short-lived by design; long-lived keys use `keys create`
MAX_RUN_KEY_DEPTH = 8  # an orchestrator's sub-agents may mint from their own run key, within reason


@dataclass(frozen=True)
class RunKeySpec:
    parent: str
    ttl_ms: int
    budget_usd: str = ""
    max_concurrency: int = 0
    tags: Mapping[str, str] = field(default_factory=dict)
    allowed_models: list[str] = field(default_factory=list)
    name: str = ""


def _budget_errors(spec: RunKeySpec, parent: KeyRecord, parent_budgets: Iterable[Budget]) -> list[str]:
    if not spec.budget_usd:
        return ["a budget is required for a run key (e.g. --budget 20)"] if parent.budget_usd else []
    try:
        amount = Decimal(spec.budget_usd)
    except InvalidOperation:
        return [f"budget {spec.budget_usd!r} is not a number of USD"]
    if not amount.is_finite() or amount <= 0 or amount * 10**12 != int(amount * 10**12):
        return [f"budget {spec.budget_usd!r} must be more than 0 USD, with at most 12 decimals"]
    errors = []
    if parent.budget_usd and amount > Decimal(parent.budget_usd):
        errors.append(f"budget {spec.budget_usd} USD exceeds the parent key's own budget of {parent.budget_usd} USD")
    for b in parent_budgets:
        if amount > Decimal(b.limit_usd):
            errors.append(f"budget {spec.budget_usd} USD exceeds the parent key's budget {b.id!r} "
                          f"({b.limit_usd} USD per {b.window})")
    return errors


def check_run_key(spec: RunKeySpec, parent: KeyRecord | None, parent_budgets: Iterable[Budget], *,
                  now_ms: int) -> list[str]:
    """Every reason the run key cannot be minted under `parent`, each saying what to change."""
    if parent is None:
        return [f"parent key {spec.parent!r} does not exist"]
    errors = []
    if parent.revoked:
        errors.append(f"parent key {parent.id} is revoked")
    if parent.expires_at_unix_ms and parent.expires_at_unix_ms <= now_ms:
        errors.append(f"parent key {parent.id} has expired")
    if not 0 < spec.ttl_ms <= MAX_TTL_MS:
        errors.append("ttl must be more than 0 and at most 30 days (e.g. --ttl 2h)")
    elif parent.expires_at_unix_ms and now_ms + spec.ttl_ms > parent.expires_at_unix_ms:
        left_s = max(0, (parent.expires_at_unix_ms - now_ms) // 1000)
        errors.append(f"ttl outlives the parent key, which expires in {left_s} s; use a shorter --ttl")
    errors += _budget_errors(spec, parent, parent_budgets)
    if spec.max_concurrency < 0:
        errors.append("max concurrency must not be negative")
    elif parent.max_concurrency and not 0 < spec.max_concurrency <= parent.max_concurrency:
        errors.append(f"max concurrency must be 1..{parent.max_concurrency} (the parent key's limit)")
    if parent.allowed_models:
        extra = sorted(set(spec.allowed_models) - set(parent.allowed_models))
        if extra:
            errors.append(f"models {', '.join(extra)} are not allowed for the parent key "
                          f"(allowed: {', '.join(parent.allowed_models)})")
    clash = sorted(k for k, v in spec.tags.items() if k in parent.default_tags and parent.default_tags[k] != v)
    if clash:
        errors.append(f"tags {', '.join(clash)} would override the parent key's tags; a run key can only add tags")
    return errors


def run_key_record(spec: RunKeySpec, parent: KeyRecord, *, key_id: str, key_hash: str, hint: str,
                   now_ms: int) -> KeyRecord:
    return KeyRecord(
        id=key_id, key_hash=key_hash, name=spec.name or f"run of {parent.id}", hint=hint, team=parent.team,
        user=parent.user, project=parent.project,
        allowed_models=list(spec.allowed_models or parent.allowed_models),
        expires_at_unix_ms=now_ms + spec.ttl_ms, created_at_unix_ms=now_ms,
        default_tags={**parent.default_tags, **spec.tags}, parent=parent.id,
        budget_usd=format(Decimal(spec.budget_usd).normalize(), "f") if spec.budget_usd else "",
        max_concurrency=spec.max_concurrency,
    )



def prunable(k: KeyRecord, *, now_ms: int, older_than_ms: int) -> bool:
    """A run key that ended (expired or revoked) more than `older_than_ms` ago: it can never be used again."""
    if not k.parent or not (k.revoked or k.expires_at_unix_ms):
        return False
    ends = [t for t, applies in ((k.expires_at_unix_ms, k.expires_at_unix_ms > 0), (k.revoked_at_unix_ms, k.revoked))
            if applies]
    return min(ends) + older_than_ms < now_ms
