"""The policy service over a revisioned KV store (etcd or embedded).

Every write is one atomic commit guarded by the policy version key, after the
resulting state has been validated: the store only ever holds states that
compile, and a concurrent writer gets Conflict instead of a lost update.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

from interlock_contracts import keys as vkeys
from interlock_contracts.credential_refs import CredentialRules
from interlock_contracts.v1 import policy_pb2

from .admin_auth import Forbidden
from .apply_retry import KeyCatchUp
from .audit import Actor, AuditAction, PolicyAuditRecord, build_record, encode_record, read_policy_log, record_key
from .budget.runkeys import MAX_RUN_KEY_DEPTH, RunKeySpec, check_run_key, prunable, run_key_record
from .diff import plan_apply
from .errors import Conflict, NotFound, PolicyInvalid
from .model_listing import model_infos
from .nodes import read_node_status
from .policy.compiler import resolve_aliases, validate
from .policy.model import Budget, KeyRecord, PolicyDocument, Project, RateLimit, Team, User
from .service_types import ApplyResult, Change, CreatedKey, KeySpec, ModelInfo, NodeStatus
from .store.base import KV, Entry
from .store.layout import KEYS, VERSION_KEY, StoredState, compile_state, encode, item_key, load_state, version_marker

log = logging.getLogger(__name__)
KEY_WRITE_ATTEMPTS = 3  # key writes don't depend on caller-seen state, so a lost race is retried
MINT_ATTEMPTS = 20  # every policy write bumps the version key, so parallel mints race each other
APPLY_ATTEMPTS = 50  # each retry re-reads only what changed since the last one (apply_retry.py)
TEAM_HINTS = 4096  # parents whose team a mint reads along with them
PRUNE_BATCH = 100  # etcd allows 128 operations per transaction by default (plus version + audit record)


class StorePolicyService:
    def __init__(
        self, kv: KV, key_pepper: bytes, clock: Callable[[], float],
        published: Callable[[], policy_pb2.PolicySnapshot | None] = lambda: None,
        credential_rules: CredentialRules | None = None,
    ):
        if not key_pepper:
            raise ValueError("key_pepper must not be empty")
        self._published = published
        self._credential_rules = credential_rules or CredentialRules()
        self._kv = kv
        self._pepper = key_pepper
        self._clock = clock
        # parent key -> its team, so a mint reads the parent's team in the same round trip as the parent (a hint:
        # checked against the parent read, a wrong one costs the extra read it saves); bounded (issue 16)
        self._team_hints: dict[str, str] = {}

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    async def _write(self, state: StoredState, puts: dict[str, bytes], deletes: list[str], reason: str,
                     *, audit: tuple[AuditAction, str | Actor, list[Change], str],
                     extra_guards: dict[str, int] | None = None, guard_version: bool = True) -> int:
        """One atomic commit that also rewrites the version key and adds the audit record (action, actor,
        changes, subject), guarded on the version we read: the change and its record land together or not at all."""
        action, actor, changes, subject = audit
        now = self._now_ms()
        record = build_record(action=action, actor=actor, changes=changes, base_version=state.version, now_ms=now,
                              subject=subject)
        puts = {**puts, VERSION_KEY: version_marker(now, reason), record_key(record): encode_record(record)}
        guards = {VERSION_KEY: state.version} if guard_version else {}
        return await self._kv.commit(puts, deletes, if_revision_of={**guards, **(extra_guards or {})})

    # -- declarative policy ---------------------------------------------------

    async def get_document(self) -> tuple[PolicyDocument, int]:
        state = await load_state(self._kv)
        return state.document(), state.version

    async def apply(self, doc: PolicyDocument, *, dry_run: bool = False, actor: str | Actor = "admin") -> ApplyResult:
        state = await load_state(self._kv)
        # Unreadable policy items are replaced by the apply; unreadable keys would survive it, so they block.
        key_errors = list(state.unreadable.get(KEYS, {}).values())
        key_errors += [f"provider {p.name!r}: {problem}" for p in doc.providers
                       if p.credential and (problem := self._credential_rules.problem(p.credential))]
        try:
            validate(doc, state.keys.values())
        except PolicyInvalid as exc:
            raise PolicyInvalid(key_errors + exc.errors) from exc
        if key_errors:
            raise PolicyInvalid(key_errors)
        plan = plan_apply(state, doc)
        if dry_run or not plan.changes:
            return ApplyResult(changes=plan.changes, version=state.version, dry_run=dry_run)
        catch_up: KeyCatchUp | None = None
        for attempt in range(APPLY_ATTEMPTS):
            try:
                version = await self._write(state, plan.puts, plan.deletes, "apply",
                                            audit=("apply", actor, plan.changes, ""))
                break
            except Conflict:  # mints rewrite the version key: catch up on the keys alone (apply_retry.py)
                if attempt + 1 == APPLY_ATTEMPTS:
                    raise
                catch_up = catch_up or KeyCatchUp(doc, state)
                await catch_up.advance(self._kv)
        log.info("policy applied: %d change(s), version %d", len(plan.changes), version)
        return ApplyResult(changes=plan.changes, version=version, dry_run=False)

    # -- virtual keys ---------------------------------------------------------

    def _check_spec(self, state: StoredState, spec: KeySpec) -> tuple[str, list[str]]:
        """Resolve the key's team (it may be implied by its user or project) and list problems."""
        users, projects, teams = state.sections["users"], state.sections["projects"], state.sections["teams"]
        errors: list[str] = []
        team = spec.team
        for kind, ident, table in (("user", spec.user, users), ("project", spec.project, projects)):
            if not ident:
                continue
            owner = table.get(ident)
            if owner is None:
                errors.append(f"{kind} {ident!r} is not defined; add it to the policy first")
                continue
            owner_team = owner.team if isinstance(owner, User | Project) else ""
            if team and owner_team != team:
                errors.append(f"{kind} {ident!r} belongs to team {owner_team!r}, not {team!r}")
            team = team or owner_team
        if spec.team and spec.team not in teams:
            errors.append(f"team {spec.team!r} is not defined; add it to the policy first")
        flat, _ = resolve_aliases(state.document())
        routable = set(state.sections["models"]) | set(flat)
        errors += [f"allowed model {m!r} is not a model or alias" for m in spec.allowed_models if m not in routable]
        if spec.expires_at_unix_ms and spec.expires_at_unix_ms <= self._now_ms():
            errors.append("expires_at is in the past")
        return team, errors

    async def create_key(self, spec: KeySpec, *, actor: str | Actor = "admin") -> CreatedKey:
        secret = vkeys.new_secret()
        key_id = vkeys.new_key_id()
        key_hash = vkeys.hash_key(self._pepper, secret).hex()
        for attempt in range(KEY_WRITE_ATTEMPTS):
            state = await load_state(self._kv)
            team, errors = self._check_spec(state, spec)
            if errors:
                raise PolicyInvalid(errors)
            record = KeyRecord(
                id=key_id, key_hash=key_hash, name=spec.name, hint=vkeys.display_hint(secret), team=team,
                user=spec.user, project=spec.project, allowed_models=list(spec.allowed_models),
                expires_at_unix_ms=spec.expires_at_unix_ms, created_at_unix_ms=self._now_ms(),
                default_tags=dict(spec.default_tags),
            )
            validate(state.document(), [*state.keys.values(), record])  # the resulting state must compile
            key = item_key(KEYS, key_id)
            try:
                change = Change(KEYS, key_id, "create", after=record.model_dump(mode="json"))
                await self._write(state, {key: encode(record)}, [], f"create key {key_id}",
                                  audit=("create_key", actor, [change], key_id), extra_guards={key: 0})
            except Conflict:
                if attempt + 1 == KEY_WRITE_ATTEMPTS:
                    raise
                continue
            log.info("virtual key %s created (team=%r user=%r project=%r)", key_id, team, spec.user, spec.project)
            return CreatedKey(record=record, secret=secret)
        raise AssertionError("unreachable")

    async def mint_run_key(self, spec: RunKeySpec, *, actor: str | Actor = "admin",
                           teams: frozenset[str] | None = None) -> CreatedKey:
        """A per-run key bounded by its parent (controlplane/budget/runkeys.py). Cheap: it reads the parent, its
        team, the budgets and the model names, never the whole key set, and writes one key in one commit.
        `teams`: the caller may mint only from keys of these teams (None = any), else Forbidden (403)."""
        secret = vkeys.new_secret()
        key_id = vkeys.new_key_id()
        key_hash = vkeys.hash_key(self._pepper, secret).hex()
        parent_key = item_key(KEYS, spec.parent)
        for attempt in range(MINT_ATTEMPTS):
            version, parent_entry, team_models, routable, budgets, read = await self._mint_context(parent_key)
            parent = KeyRecord.model_validate_json(parent_entry.value) if parent_entry else None
            if parent is not None and teams is not None and parent.team not in teams:
                # An operator acting as another team would spend that team's budgets under its name.
                raise Forbidden(f"this identity may mint run keys only from keys of team(s) "
                                f"{', '.join(sorted(teams)) or '(none)'}; key {parent.id} belongs to team "
                                f"{parent.team!r} (an admin can add it to the credential's teams)")
            now = self._now_ms()
            errors = check_run_key(spec, parent, budgets, now_ms=now) + await self._ancestor_errors(parent)
            allowed = (parent.allowed_models if parent else []) or team_models
            errors += [f"model {m!r} is not a model or alias" for m in spec.allowed_models if m not in routable]
            errors += [f"model {m!r} is not allowed for the parent key's team" for m in spec.allowed_models
                       if allowed and m in routable and m not in allowed]
            if errors or parent is None or parent_entry is None:
                raise PolicyInvalid(errors)
            record = run_key_record(spec, parent, key_id=key_id, key_hash=key_hash,
                                    hint=vkeys.display_hint(secret), now_ms=now)
            state = StoredState(sections={}, keys={}, version=version, revision=0)
            change = Change(KEYS, key_id, "create", after=record.model_dump(mode="json"))
            # Guarded on what this mint read (parent, its team, the models it names), not on the global version:
            # parallel mints never conflict with each other, and an edit that removes what the key relies on
            # still makes the mint retry against the new state. The version key is still rewritten: each mint
            # is a version of its own.
            relied_on = {*(item_key(s, m) for s in ("models", "aliases") for m in spec.allowed_models),
                         *(item_key("budgets", b.id) for b in budgets), item_key("teams", parent.team)}
            guards = {item_key(KEYS, key_id): 0, parent_key: parent_entry.mod_revision,
                      **{k: rev for k, rev in read.items() if k in relied_on}}
            try:
                await self._write(state, {item_key(KEYS, key_id): encode(record)}, [], f"mint run key {key_id}",
                                  audit=("create_key", actor, [change], key_id), extra_guards=guards,
                                  guard_version=False)
            except Conflict:
                if attempt + 1 == MINT_ATTEMPTS:
                    raise
                await asyncio.sleep(random.uniform(0, 0.005 * (attempt + 1)))  # orchestrators mint in parallel
                continue
            log.info("run key %s minted from %s", key_id, parent.id)
            return CreatedKey(record=record, secret=secret)
        raise AssertionError("unreachable")

    async def _ancestor_errors(self, parent: KeyRecord | None) -> list[str]:
        """A run key of a run key: every ancestor must still be live (expiry is already nested at mint time)."""
        cur, depth = parent, 1
        while cur is not None and cur.parent:
            if depth >= MAX_RUN_KEY_DEPTH:
                return [f"run keys nest at most {MAX_RUN_KEY_DEPTH} deep; mint from a key higher up"]
            entry = await self._kv.get(item_key(KEYS, cur.parent))
            cur = KeyRecord.model_validate_json(entry.value) if entry else None
            if cur is not None and cur.revoked:
                return [f"key {cur.id}, an ancestor of the parent key, is revoked"]
            depth += 1
        return []

    async def _mint_context(
        self, parent_key: str
    ) -> tuple[int, Entry | None, list[str], set[str], list[Budget], dict[str, int]]:
        """(version, parent, team models, routable names, parent budgets, mod revisions of the items read)."""
        prefixes = [item_key("models", ""), item_key("aliases", ""), item_key("budgets", "")]
        read_many = getattr(self._kv, "read_many", None)
        hint = self._team_hints.get(parent_key)
        hinted: dict[str, Entry | None] = {}
        if read_many is not None:  # etcd: one round trip (store/etcd.py)
            singles, ranges = await read_many([VERSION_KEY, parent_key, *([item_key("teams", hint)] if hint else [])],
                                              prefixes)
            version, parent = singles[VERSION_KEY], singles[parent_key]
            hinted = {k: v for k, v in singles.items() if k not in (VERSION_KEY, parent_key)}
            found: list[dict[str, Entry]] = [ranges[p] for p in prefixes]
        else:
            version, parent = await asyncio.gather(self._kv.get(VERSION_KEY), self._kv.get(parent_key))
            found = [entries for entries, _ in await asyncio.gather(*map(self._kv.get_prefix, prefixes))]
        models, aliases, budget_entries = found
        team_models: list[str] = []
        read = {k: e.mod_revision for k, e in [*models.items(), *aliases.items(), *budget_entries.items()]}
        if parent is not None:
            team_id = KeyRecord.model_validate_json(parent.value).team
            team_key = item_key("teams", team_id)
            if team_key in hinted:
                team = hinted[team_key]
            else:
                team = await self._kv.get(team_key) if team_id else None
                if team_id and read_many is not None:
                    if len(self._team_hints) >= TEAM_HINTS:
                        del self._team_hints[next(iter(self._team_hints))]
                    self._team_hints[parent_key] = team_id
            team_models = Team.model_validate_json(team.value).allowed_models if team else []
            if team is not None:
                read[item_key("teams", team_id)] = team.mod_revision
        routable = {k.rsplit("/", 1)[-1] for k in [*models, *aliases]}
        budgets = [b for b in (Budget.model_validate_json(e.value) for e in budget_entries.values())
                   if b.scope == "key" and parent is not None and b.scope_id == parent_key.rsplit("/", 1)[-1]]
        return (version.mod_revision if version else 0), parent, team_models, routable, budgets, read

    async def prune_run_keys(self, *, older_than_ms: int, actor: str = "interlock") -> list[str]:
        """Delete per-run keys that expired or were revoked more than `older_than_ms` ago, so one key per task does
        not grow every snapshot forever. Keys that limits name or that have run keys of their own are kept.
        At most PRUNE_BATCH per call (etcd bounds the operations in one transaction)."""
        for attempt in range(KEY_WRITE_ATTEMPTS):
            state = await load_state(self._kv)
            now = self._now_ms()
            named = {x.scope_id for section in ("budgets", "rate_limits") for x in state.sections[section].values()
                     if isinstance(x, Budget | RateLimit) and x.scope == "key"}
            keep = named | {k.parent for k in state.keys.values() if k.parent}
            dead = sorted(k.id for k in state.keys.values()
                          if k.id not in keep and prunable(k, now_ms=now, older_than_ms=older_than_ms))[:PRUNE_BATCH]
            if not dead:
                return []
            changes = [Change(KEYS, i, "delete", before=state.keys[i].model_dump(mode="json")) for i in dead]
            try:
                await self._write(state, {}, [item_key(KEYS, i) for i in dead], f"prune {len(dead)} run keys",
                                  audit=("prune_keys", actor, changes, ""))
            except Conflict:
                if attempt + 1 == KEY_WRITE_ATTEMPTS:
                    raise
                continue
            log.info("pruned %d expired or revoked run keys", len(dead))
            return dead
        raise AssertionError("unreachable")

    async def list_keys(self) -> list[KeyRecord]:
        state = await load_state(self._kv)
        return sorted(state.keys.values(), key=lambda k: (k.created_at_unix_ms, k.id))

    async def revoke_key(self, key_id: str, *, actor: str | Actor = "admin") -> KeyRecord:
        # No validation here on purpose: revoking a leaked key must never be blocked by unrelated policy errors.
        for attempt in range(KEY_WRITE_ATTEMPTS):
            state = await load_state(self._kv)
            record = state.keys.get(key_id)
            if record is None:
                raise NotFound(f"virtual key {key_id!r} does not exist")
            if record.revoked:
                return record
            before, record = record, record.model_copy(update={"revoked": True, "revoked_at_unix_ms": self._now_ms()})
            change = Change(KEYS, key_id, "update", before.model_dump(mode="json"), record.model_dump(mode="json"))
            try:
                await self._write(state, {item_key(KEYS, key_id): encode(record)}, [], f"revoke key {key_id}",
                                  audit=("revoke_key", actor, [change], key_id))
            except Conflict:
                if attempt + 1 == KEY_WRITE_ATTEMPTS:
                    raise
                continue
            log.info("virtual key %s revoked", key_id)
            return record
        raise AssertionError("unreachable")

    async def set_paused(self, key_id: str, paused: bool, reason: str = "", *,
                         actor: str | Actor = "admin") -> tuple[KeyRecord, bool]:
        """Pause (loop breaker) or resume a key; audited like a revocation, never blocked by unrelated policy
        errors. Returns (record, changed): pausing a paused key or resuming a running one changes nothing."""
        for attempt in range(KEY_WRITE_ATTEMPTS):
            state = await load_state(self._kv)
            record = state.keys.get(key_id)
            if record is None:
                raise NotFound(f"virtual key {key_id!r} does not exist")
            if record.paused == paused:
                return record, False
            before = record
            record = record.model_copy(update={"paused": paused, "paused_reason": reason if paused else "",
                                               "paused_at_unix_ms": self._now_ms() if paused else 0})
            change = Change(KEYS, key_id, "update", before.model_dump(mode="json"), record.model_dump(mode="json"))
            action: AuditAction = "pause_key" if paused else "resume_key"
            try:
                await self._write(state, {item_key(KEYS, key_id): encode(record)}, [], f"{action} {key_id}",
                                  audit=(action, actor, [change], key_id))
            except Conflict:
                if attempt + 1 == KEY_WRITE_ATTEMPTS:
                    raise
                continue
            log.info("virtual key %s %s%s", key_id, "paused" if paused else "resumed", f": {reason}" if reason else "")
            return record, True
        raise AssertionError("unreachable")

    # -- read models ----------------------------------------------------------

    async def list_models(self) -> list[ModelInfo]:
        return model_infos((await load_state(self._kv)).document())

    async def policy_log(self, since_ms: int | None = None, limit: int = 100) -> list[PolicyAuditRecord]:
        """Recorded policy changes, newest first (see controlplane/audit.py)."""
        return await read_policy_log(self._kv, since_ms, limit)

    async def node_status(self) -> list[NodeStatus]:
        return await read_node_status(self._kv)

    async def current_snapshot(self) -> policy_pb2.PolicySnapshot:
        """The stored state compiled now; if it does not compile (written around the API), the snapshot
        the publisher still serves, so status stays answerable exactly when something is wrong."""
        try:
            return compile_state(await load_state(self._kv), self._now_ms())
        except PolicyInvalid:
            published = self._published()
            if published is None:
                raise
            return published
