"""Apply a key delta to a CompiledPolicy's indexes in place, in O(delta) (issue 16).

A mint, revoke or prune changes a few virtual keys and the implicit budget and concurrency limit each run
key carries ("key:{id}" limits). Those touch three indexes: key hash -> KeyEntry, and the budget index's
per-key budgets and rate limits. `KeyIndexer` keeps what it needs to update them without a recompile:
the teams and alias map (for KeyEntry), which hash each key id sits under, the budgets and rate limits by
scope, and which keys were minted from which.

`fast_path` says whether a delta qualifies: no section replaced (models, teams... changed: recompile) and
every budget or rate-limit change scoped to a key the delta itself carries (or that key's children, when
few). Anything else is recompiled in full, off the event loop, by PolicyHolder.

Mutating the live dicts is safe on the event loop: a request reads them between awaits, never during this.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar, cast

from dataplane.budget.index import BudgetIndex, BudgetSpec, RateSpec, budget_spec, rate_spec
from dataplane.snapshot.policy import CompiledPolicy, KeyEntry, aliases_by_target, key_entry
from interlock_contracts.v1 import control_pb2, policy_pb2

V = TypeVar("V")
MAX_CHILDREN = 256  # a parent whose key-scope limits change with more run keys than this: recompile instead


class KeyIndexer:
    """Built with each full compile (off the loop), or deferred (boot from disk: `warm` it in a thread before
    the first delta); updated by each fast-path delta."""

    def __init__(self, snap: policy_pb2.PolicySnapshot, budgets: BudgetIndex, *, defer: bool = False):
        self._snap: policy_pb2.PolicySnapshot | None = snap
        self._budgets, self._rates = budgets.budgets, budgets.rates  # the live maps, updated in place
        self._teams: dict[str, policy_pb2.Team] = {}
        self._aliases_of: dict[str, list[str]] = {}
        self._keys: dict[str, policy_pb2.VirtualKey] = {}
        self._children: dict[str, set[str]] = {}
        self._budget_scope: dict[tuple[str, str], dict[str, BudgetSpec]] = {}
        self._rate_scope: dict[tuple[str, str], dict[str, RateSpec]] = {}
        if not defer:
            self.warm()

    def warm(self) -> None:
        """Build the indexes (O(keys)). Reads only the immutable snapshot, so it may run in a thread while the
        loop serves; a delta waits for it (SnapshotSync warms before subscribing; fast_path warms if not)."""
        snap = self._snap
        if snap is None:
            return
        self._teams = {t.id: t for t in snap.teams}
        self._aliases_of = aliases_by_target(snap)
        self._keys = {k.id: k for k in snap.keys}
        for k in snap.keys:
            if k.parent_key_id:
                self._children.setdefault(k.parent_key_id, set()).add(k.id)
        for b in snap.budget_policy.budgets:
            self._budget_scope.setdefault((b.scope, b.scope_id), {})[b.id] = budget_spec(b)
        for r in snap.budget_policy.rate_limits:
            self._rate_scope.setdefault((r.scope, r.scope_id), {})[r.id] = rate_spec(r)
        self._snap = None

    @property
    def warmed(self) -> bool:
        return self._snap is None

    def fast_path(self, delta: control_pb2.PolicyDelta) -> bool:
        self.warm()
        if delta.replaced_sections:
            return False
        carried = {k.id for k in delta.upsert_keys} | set(delta.removed_keys)
        for scope, scope_id in self._limit_scopes(delta):
            if scope != "key":
                return False  # a team/user/project/tag/model/global limit changed: recompile
            if scope_id not in carried and len(self._children.get(scope_id, ())) > MAX_CHILDREN:
                return False
        return True

    def _limit_scopes(self, delta: control_pb2.PolicyDelta) -> Iterable[tuple[str, str]]:
        bi = {b.id: b for b in delta.upsert_budgets}
        ri = {r.id: r for r in delta.upsert_rate_limits}
        for b in delta.upsert_budgets:
            yield b.scope, b.scope_id
        for r in delta.upsert_rate_limits:
            yield r.scope, r.scope_id
        for ident in delta.removed_budgets:
            old = self._budgets.get(ident)
            if old is not None and ident not in bi:
                yield old.scope, old.scope_id
        for ident in delta.removed_rate_limits:
            old_r = self._rates.get(ident)
            if old_r is not None and ident not in ri:
                yield old_r.scope, old_r.scope_id


    def apply(self, policy: CompiledPolicy, delta: control_pb2.PolicyDelta) -> None:
        """Update `policy`'s key and budget indexes in place (call only when fast_path(delta))."""
        self.warm()
        keys = cast(dict[bytes, KeyEntry], policy.keys)
        index = policy.budgets
        budgets = cast(dict[str, BudgetSpec], index.budgets)
        rates = cast(dict[str, RateSpec], index.rates)
        touched: set[str] = set()
        for ident in delta.removed_budgets:
            old = budgets.get(ident)
            if old is not None:
                del self._budget_scope[(old.scope, old.scope_id)][ident]
                budgets.pop(ident, None)
                touched.add(old.scope_id)
        for ident in delta.removed_rate_limits:
            old_r = rates.get(ident)
            if old_r is not None:
                del self._rate_scope[(old_r.scope, old_r.scope_id)][ident]
                rates.pop(ident, None)
                touched.add(old_r.scope_id)
        for b in delta.upsert_budgets:
            spec = budget_spec(b)
            prev = budgets.get(spec.id)
            if prev is not None:
                self._budget_scope[(prev.scope, prev.scope_id)].pop(spec.id, None)
                touched.add(prev.scope_id)
            budgets[spec.id] = self._budget_scope.setdefault((spec.scope, spec.scope_id), {})[spec.id] = spec
            touched.add(spec.scope_id)
        for r in delta.upsert_rate_limits:
            rspec = rate_spec(r)
            prev_r = rates.get(rspec.id)
            if prev_r is not None:
                self._rate_scope[(prev_r.scope, prev_r.scope_id)].pop(rspec.id, None)
                touched.add(prev_r.scope_id)
            rates[rspec.id] = self._rate_scope.setdefault((rspec.scope, rspec.scope_id), {})[rspec.id] = rspec
            touched.add(rspec.scope_id)
        for ident in delta.removed_keys:
            old_k = self._keys.pop(ident, None)
            if old_k is not None:
                keys.pop(bytes(old_k.key_hash), None)
                self._unlink(old_k)
            touched.add(ident)
        for k in delta.upsert_keys:
            old_k = self._keys.get(k.id)
            if old_k is not None:
                keys.pop(bytes(old_k.key_hash), None)
                self._unlink(old_k)
            self._keys[k.id] = k
            if k.parent_key_id:
                self._children.setdefault(k.parent_key_id, set()).add(k.id)
            keys[bytes(k.key_hash)] = key_entry(k, self._teams, self._aliases_of)
            touched.add(k.id)
        for ident in list(touched):
            touched.update(self._children.get(ident, ()))  # a parent's key-scope limits apply to its runs
        self._reindex_limits(index, touched)

    def _unlink(self, k: policy_pb2.VirtualKey) -> None:
        if k.parent_key_id and (siblings := self._children.get(k.parent_key_id)) is not None:
            siblings.discard(k.id)
            if not siblings:
                del self._children[k.parent_key_id]

    def _reindex_limits(self, index: BudgetIndex, key_ids: Iterable[str]) -> None:
        by_key = cast(dict[str, tuple[BudgetSpec, ...]], index.budgets_by_key)
        rates_by_key = cast(dict[str, tuple[RateSpec, ...]], index.rates_by_key)
        for ident in key_ids:
            k = self._keys.get(ident)
            if k is None:
                by_key.pop(ident, None)
                rates_by_key.pop(ident, None)
                continue
            scopes = [(s, i) for s, i in (("key", k.id), ("key", k.parent_key_id), ("team", k.team_id),
                                          ("user", k.user_id), ("project", k.project_id)) if i]
            kb = tuple(b for s in scopes for _, b in sorted(self._budget_scope.get(s, {}).items()))
            kr = tuple(r for s in scopes for _, r in sorted(self._rate_scope.get(s, {}).items()))
            _set_or_drop(by_key, ident, kb)
            _set_or_drop(rates_by_key, ident, kr)
        index._rate_memo.clear()  # memoised per (key, model): cheap to rebuild, wrong to keep


def _set_or_drop(table: dict[str, tuple[V, ...]], ident: str, value: tuple[V, ...]) -> None:
    if value:
        table[ident] = value
    else:
        table.pop(ident, None)
