"""Diff a declarative PolicyDocument against the stored state, item by item."""

from __future__ import annotations

from dataclasses import dataclass, field

from .policy.model import SECTIONS, PolicyDocument, record_key
from .service_types import Change
from .store.layout import StoredState, encode, item_key


@dataclass
class Plan:
    """What an apply would do: the reported changes and the store writes that make them."""

    changes: list[Change] = field(default_factory=list)
    puts: dict[str, bytes] = field(default_factory=dict)
    deletes: list[str] = field(default_factory=list)


def plan_apply(state: StoredState, doc: PolicyDocument) -> Plan:
    """Items in `doc` are created or updated, stored items absent from it are deleted.
    Unreadable stored items are always rewritten or deleted (their `before` is None)."""
    plan = Plan()
    for section in SECTIONS:
        desired = {record_key(section, item): item for item in getattr(doc, section)}
        current = state.dumped(section)
        broken = set(state.unreadable.get(section, {}))
        for name in sorted(desired.keys() | current.keys() | broken):
            before = current.get(name)
            model = desired.get(name)
            if model is None:
                plan.changes.append(Change(section, name, "delete", before=before))
                plan.deletes.append(item_key(section, name))
                continue
            after = model.model_dump(mode="json")
            if before == after and name not in broken:
                continue
            created = before is None and name not in broken
            plan.changes.append(Change(section, name, "create" if created else "update", before=before, after=after))
            plan.puts[item_key(section, name)] = encode(model)
    return plan
