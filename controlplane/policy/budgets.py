"""Validate and compile the budget part of policy: budgets, rate limits, per-run key limits, unpriced models.

Pure, like the rest of the compiler. Per-run keys (KeyRecord.parent set) carry an implicit lifetime budget
and concurrency limit; they compile into ordinary Budget/RateLimit entries with id "key:{key_id}" (a colon
never appears in declared ids), so the data plane handles one kind of limit.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable
from decimal import Decimal

from interlock_contracts.budget_windows import zone
from interlock_contracts.v1 import policy_pb2

from .model import Budget, KeyRecord, Model, PolicyDocument, RateLimit

PICO_PER_USD = 10**12
# Reserve/settle price for models with no price that are not marked free: deliberately high (above list prices of
# the most expensive mainstream models), so an unpriced model exhausts a budget early rather than never.
UNPRICED_INPUT_USD_PER_MTOK = "15"
UNPRICED_OUTPUT_USD_PER_MTOK = "75"
# Worst-case output when neither the request (max_tokens) nor the model (max_output_tokens) bounds it.
DEFAULT_MAX_OUTPUT_TOKENS = 32_768
TAG_SCOPE_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}=.{1,128}$")
IMPLICIT_PREFIX = "key:"


def usd_to_pico(usd: str) -> int:
    return int(Decimal(usd) * PICO_PER_USD)


def implicit_limit_id(key_id: str) -> str:
    return IMPLICIT_PREFIX + key_id


def is_unpriced(m: Model) -> bool:
    return not m.free and Decimal(m.price.input) == 0 and Decimal(m.price.output) == 0


def _scope_errors(where: str, scope: str, scope_id: str, refs: dict[str, Collection[str]]) -> list[str]:
    if scope == "tag":
        if not TAG_SCOPE_RE.match(scope_id):
            return [f"{where}: tag scope_id must be 'name=value' (e.g. 'task=T-123'), got {scope_id!r}"]
        return []
    if scope == "global":
        return [f"{where}: a global rate limit takes no scope_id"] if scope_id else []
    known = refs[scope]
    if scope_id not in known:
        hint = "create the key first" if scope == "key" else "add it to the policy first"
        return [f"{where}: {scope} {scope_id!r} is not defined; {hint}"]
    return []


def _budget_errors(b: Budget, refs: dict[str, Collection[str]]) -> list[str]:
    where = f"budget {b.id!r}"
    errors = _scope_errors(where, b.scope, b.scope_id, refs)
    try:
        zone(b.timezone)
    except ValueError as exc:
        errors.append(f"{where}: {exc}")
    optimistic = Decimal(b.optimistic_overshoot_usd) > 0
    if b.offline_mode == "optimistic" and not optimistic:
        errors.append(f"{where}: offline_mode optimistic needs optimistic_overshoot_usd > 0 (the per-node overshoot bound)")
    if b.offline_mode != "optimistic" and optimistic:
        errors.append(f"{where}: optimistic_overshoot_usd only applies with offline_mode: optimistic")
    return errors


def _rate_errors(r: RateLimit, refs: dict[str, Collection[str]]) -> list[str]:
    where = f"rate limit {r.id!r}"
    errors = _scope_errors(where, r.scope, r.scope_id, refs)
    if not (r.requests_per_minute or r.tokens_per_minute or r.max_concurrent):
        errors.append(f"{where}: set at least one of requests_per_minute, tokens_per_minute, max_concurrent")
    errors += [f"{where}: model {m!r} is not a model or alias" for m in r.models if m not in refs["model"]]
    return errors


def key_limit_errors(k: KeyRecord, parent_exists: Callable[[str], bool]) -> list[str]:
    """A key's parent and its own limits (also checked alone for key deltas: controlplane/policy/incremental.py)."""
    where = f"virtual key {k.id}"
    errors = []
    if k.parent and not parent_exists(k.parent):
        errors.append(f"{where}: parent key {k.parent!r} does not exist")
    if k.budget_usd:
        try:
            if Decimal(k.budget_usd) <= 0:
                errors.append(f"{where}: budget_usd must be more than 0")
        except ArithmeticError:
            errors.append(f"{where}: budget_usd {k.budget_usd!r} is not a decimal number")
    if k.max_concurrency < 0:
        errors.append(f"{where}: max_concurrency must not be negative")
    return errors


def validate_budgets(
    doc: PolicyDocument, keys: Iterable[KeyRecord], routable: Collection[str]
) -> list[str]:
    """Every problem with budgets, rate limits and per-run key limits, each naming what to fix."""
    keys = list(keys)
    key_ids = {k.id for k in keys}
    refs: dict[str, Collection[str]] = {
        "key": key_ids, "team": {t.id for t in doc.teams}, "user": {u.id for u in doc.users},
        "project": {p.id for p in doc.projects}, "model": routable,
    }
    errors: list[str] = []
    for kind, ids in (("budget", [b.id for b in doc.budgets]), ("rate limit", [r.id for r in doc.rate_limits])):
        seen: set[str] = set()
        for i in ids:
            if i in seen:
                errors.append(f"{kind} {i!r} is defined more than once")
            seen.add(i)
    for b in doc.budgets:
        errors += _budget_errors(b, refs)
    for r in doc.rate_limits:
        errors += _rate_errors(r, refs)
    for k in keys:
        errors += key_limit_errors(k, key_ids.__contains__)
    return errors


def revoked_ids(keys: Iterable[KeyRecord]) -> set[str]:
    """Keys that are revoked themselves or through any ancestor (revoking a parent revokes its runs)."""
    by_id = {k.id: k for k in keys}
    out: set[str] = set()
    for k in by_id.values():
        seen: set[str] = set()
        cur: KeyRecord | None = k
        while cur is not None and cur.id not in seen:
            if cur.revoked:
                out.add(k.id)
                break
            seen.add(cur.id)
            cur = by_id.get(cur.parent) if cur.parent else None
    return out


def _budget_pb(b: Budget) -> policy_pb2.Budget:
    return policy_pb2.Budget(
        id=b.id, scope=b.scope, scope_id=b.scope_id, window=b.window, limit_pico=usd_to_pico(b.limit_usd),
        timezone=b.timezone, offline_mode=b.offline_mode,
        optimistic_overshoot_pico=usd_to_pico(b.optimistic_overshoot_usd), limit_usd=b.limit_usd,
        max_staleness_ms=int(b.max_staleness_s * 1000),
    )


def _rate_pb(r: RateLimit) -> policy_pb2.RateLimit:
    return policy_pb2.RateLimit(
        id=r.id, scope=r.scope, scope_id=r.scope_id, models=sorted(r.models),
        requests_per_minute=r.requests_per_minute, tokens_per_minute=r.tokens_per_minute,
        max_concurrent=r.max_concurrent, offline_mode=r.offline_mode,
    )


def implicit_limits(keys: Iterable[KeyRecord]) -> tuple[list[Budget], list[RateLimit]]:
    """The lifetime budget and concurrency limit a per-run key carries (none once it or an ancestor is revoked)."""
    keys = list(keys)
    revoked = revoked_ids(keys)
    budgets, rates = [], []
    for k in keys:
        if k.id in revoked:
            continue
        if k.budget_usd:
            budgets.append(Budget.model_construct(
                id=implicit_limit_id(k.id), scope="key", scope_id=k.id, window="lifetime", limit_usd=k.budget_usd,
                timezone="UTC", offline_mode="safe_share", optimistic_overshoot_usd="0",
                # every field given: a default_factory makes model_construct inspect signatures (~0.3 ms a key)
                alert_thresholds=[], max_staleness_s=0,
            ))
        if k.max_concurrency:
            rates.append(RateLimit.model_construct(
                id=implicit_limit_id(k.id), scope="key", scope_id=k.id, models=[], requests_per_minute=0,
                tokens_per_minute=0, max_concurrent=k.max_concurrency, offline_mode="safe_share",
            ))
    return budgets, rates


def compile_budget_policy(doc: PolicyDocument, keys: Iterable[KeyRecord]) -> policy_pb2.BudgetPolicy:
    run_budgets, run_rates = implicit_limits(keys)
    return policy_pb2.BudgetPolicy(
        budgets=[_budget_pb(b) for b in sorted([*doc.budgets, *run_budgets], key=lambda b: b.id)],
        rate_limits=[_rate_pb(r) for r in sorted([*doc.rate_limits, *run_rates], key=lambda r: r.id)],
        unpriced_price=policy_pb2.Price(
            input_per_mtok=UNPRICED_INPUT_USD_PER_MTOK, output_per_mtok=UNPRICED_OUTPUT_USD_PER_MTOK,
            cached_input_per_mtok=UNPRICED_INPUT_USD_PER_MTOK, version="unpriced",
        ),
        unpriced_models=sorted(m.name for m in doc.models if is_unpriced(m)),
        default_max_output_tokens=DEFAULT_MAX_OUTPUT_TOKENS,
    )
