"""Compile key changes alone (issue 16): a mint, revoke or prune costs O(change) on the control plane.

`KeyCompiler` is built next to a full compile (from the same document and keys) and then follows key-only
changes: it validates each changed key against the policy exactly as `validate` would (team, user, project,
allowed models, parent, limits), compiles it as `compile_snapshot` would (`key_pb`, implicit run-key limits),
and propagates revocation to descendants (revoking a parent revokes its runs). Anything that is not a key
change goes through the full compile instead. The publisher's tests compare the result with a full compile.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from interlock_contracts.v1 import policy_pb2

from .budgets import _budget_pb, _rate_pb, implicit_limit_id, implicit_limits, key_limit_errors
from .compiler import key_pb, resolve_aliases
from .model import KeyRecord, PolicyDocument


@dataclass
class KeyChanges:
    keys: dict[str, policy_pb2.VirtualKey] = field(default_factory=dict)
    removed_keys: set[str] = field(default_factory=set)
    budgets: dict[str, policy_pb2.Budget] = field(default_factory=dict)
    removed_budgets: set[str] = field(default_factory=set)
    rates: dict[str, policy_pb2.RateLimit] = field(default_factory=dict)
    removed_rates: set[str] = field(default_factory=set)


class KeyCompiler:
    def __init__(self, doc: PolicyDocument, keys: Mapping[str, KeyRecord]):
        flat, _ = resolve_aliases(doc)
        self._routable = {m.name for m in doc.models} | set(flat)
        self._teams = {t.id for t in doc.teams}
        self._users = {u.id for u in doc.users}
        self._projects = {p.id for p in doc.projects}
        self._named = {b.scope_id for b in doc.budgets if b.scope == "key"}
        self._named |= {r.scope_id for r in doc.rate_limits if r.scope == "key"}
        self._keys: dict[str, KeyRecord] = dict(keys)
        self._children: dict[str, set[str]] = {}
        for k in self._keys.values():
            if k.parent:
                self._children.setdefault(k.parent, set()).add(k.id)

    def errors(self, puts: Mapping[str, KeyRecord], deleted: set[str]) -> list[str]:
        """What `validate` would say about the state after this change, for the parts the change touches."""
        def exists(i: str) -> bool:
            return i in puts or (i in self._keys and i not in deleted)

        errors: list[str] = []
        for k in puts.values():
            where = f"virtual key {k.id}"
            if k.team and k.team not in self._teams:
                errors.append(f"{where} belongs to team {k.team!r}, which the policy no longer defines")
            if k.user and k.user not in self._users:
                errors.append(f"{where} belongs to user {k.user!r}, which the policy no longer defines")
            if k.project and k.project not in self._projects:
                errors.append(f"{where} belongs to project {k.project!r}, which the policy no longer defines")
            if not k.revoked:
                errors += [f"{where}: allowed model {n!r} is not a model or alias"
                           for n in k.allowed_models if n not in self._routable]
            errors += key_limit_errors(k, exists)
        for i in deleted:
            if i in self._named:
                errors.append(f"key {i!r} is named by a budget or rate limit")
            orphans = [c for c in self._children.get(i, ()) if exists(c) and (c not in puts or puts[c].parent == i)]
            if orphans and i not in puts:
                errors.append(f"virtual key {orphans[0]}: parent key {i!r} does not exist")
        return errors

    def apply(self, puts: Mapping[str, KeyRecord], deleted: set[str]) -> KeyChanges:
        """Take the change in (call after errors() came back empty) and compile what it affects."""
        affected = set(puts) | set(deleted)
        for i in list(puts):
            affected |= self._descendants(i)  # a revoke reaches the runs minted from the key
        for i in deleted:
            if i not in puts and (old := self._keys.pop(i, None)) is not None:
                self._unlink(old)
        for k in puts.values():
            if (previous := self._keys.get(k.id)) is not None:
                self._unlink(previous)
            self._keys[k.id] = k
            if k.parent:
                self._children.setdefault(k.parent, set()).add(k.id)
        out = KeyChanges()
        for i in sorted(affected):
            limit_id = implicit_limit_id(i)
            rec = self._keys.get(i)
            if rec is None:
                out.removed_keys.add(i)
                out.removed_budgets.add(limit_id)
                out.removed_rates.add(limit_id)
                continue
            revoked = self._revoked(rec)
            out.keys[i] = key_pb(rec, revoked=revoked)
            budgets, rates = implicit_limits([] if revoked else [rec])
            if budgets:
                out.budgets[limit_id] = _budget_pb(budgets[0])
            else:
                out.removed_budgets.add(limit_id)
            if rates:
                out.rates[limit_id] = _rate_pb(rates[0])
            else:
                out.removed_rates.add(limit_id)
        return out

    def _revoked(self, k: KeyRecord) -> bool:
        seen: set[str] = set()
        cur: KeyRecord | None = k
        while cur is not None and cur.id not in seen:
            if cur.revoked:
                return True
            seen.add(cur.id)
            cur = self._keys.get(cur.parent) if cur.parent else None
        return False

    def _descendants(self, i: str) -> set[str]:
        out: set[str] = set()
        todo = [i]
        while todo:
            for c in self._children.get(todo.pop(), ()):
                if c not in out:
                    out.add(c)
                    todo.append(c)
        return out

    def _unlink(self, k: KeyRecord) -> None:
        if k.parent and (siblings := self._children.get(k.parent)) is not None:
            siblings.discard(k.id)
            if not siblings:
                del self._children[k.parent]
