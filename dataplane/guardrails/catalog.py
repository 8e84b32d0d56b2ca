"""Which rules a detector name stands for: a group ("secrets", "pii") or one rule id."""

from __future__ import annotations

from dataplane.guardrails.rules import ALL_RULES, PII_RULES, SECRET_RULES, Rule

GROUPS: dict[str, tuple[Rule, ...]] = {"secrets": SECRET_RULES, "pii": PII_RULES}


def known_detector(name: str) -> bool:
    return name in GROUPS or name in ALL_RULES


def expand(names: list[str]) -> list[Rule]:
    """Rules for the names, each once, in catalog order (the scan's alternation order)."""
    wanted: set[str] = set()
    for n in names:
        wanted.update(r.id for r in GROUPS[n]) if n in GROUPS else wanted.add(n)
    return [r for r in (*SECRET_RULES, *PII_RULES) if r.id in wanted]
