"""Rule conditions, compiled once per snapshot: sets and pre-compiled globs, no regex built per request.

`mismatch()` returns "" when a rule applies, else a constant naming the first condition that failed,
so the hot path and `interlock explain` run the very same code.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass

from interlock_contracts.v1 import policy_pb2

_GLOB_CHARS = frozenset("*?[")


@dataclass(slots=True)  # per request: a frozen dataclass's __init__ costs ~2x
class Facts:
    """What rules may look at. Headers are lower-case names (as the HTTP server delivers them)."""

    key_id: str
    team_id: str
    project_id: str
    requested: str
    headers: Mapping[str, str]
    tags: Mapping[str, str]
    has_tools: bool
    input_tokens: int  # estimate: request bytes / 4


class Pattern:
    """An exact value or a glob; the glob is compiled here, once."""

    __slots__ = ("_exact", "_re", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._exact = None if _GLOB_CHARS & set(text) else text
        self._re = None if self._exact is not None else re.compile(fnmatch.translate(text))

    def __call__(self, value: str) -> bool:
        if self._exact is not None:
            return value == self._exact
        assert self._re is not None
        return self._re.match(value) is not None


@dataclass(frozen=True, slots=True)
class Conditions:
    keys: frozenset[str]
    teams: frozenset[str]
    projects: frozenset[str]
    models: tuple[Pattern, ...]
    headers: tuple[tuple[str, Pattern, str], ...]  # (name, pattern, mismatch reason)
    tags: tuple[tuple[str, Pattern, str], ...]
    has_tools: bool | None
    min_tokens: int
    max_tokens: int

    @classmethod
    def of(cls, m: policy_pb2.RuleMatch) -> Conditions:
        return cls(
            keys=frozenset(m.keys), teams=frozenset(m.teams), projects=frozenset(m.projects),
            models=tuple(Pattern(p) for p in m.models),
            headers=tuple((n, Pattern(v), f"header {n} is not {v!r}") for n, v in sorted(m.headers.items())),
            tags=tuple((n, Pattern(v), f"tag {n} is not {v!r}") for n, v in sorted(m.tags.items())),
            has_tools=m.has_tools if m.HasField("has_tools") else None,
            min_tokens=m.min_input_tokens, max_tokens=m.max_input_tokens,
        )

    def model_matches(self, requested: str) -> bool:
        return not self.models or any(p(requested) for p in self.models)

    def mismatch(self, f: Facts, *, model_checked: bool = False) -> str:
        if self.keys and f.key_id not in self.keys:
            return "key not listed"
        if self.teams and f.team_id not in self.teams:
            return "team not listed"
        if self.projects and f.project_id not in self.projects:
            return "project not listed"
        if not model_checked and not self.model_matches(f.requested):
            return "requested model does not match"
        for name, pat, why in self.headers:
            v = f.headers.get(name)
            if v is None or not pat(v):
                return why
        for name, pat, why in self.tags:
            v = f.tags.get(name)
            if v is None or not pat(v):
                return why
        if self.has_tools is not None and f.has_tools != self.has_tools:
            return "has_tools differs"
        if f.input_tokens < self.min_tokens:
            return "input below min_input_tokens"
        if self.max_tokens and f.input_tokens > self.max_tokens:
            return "input above max_input_tokens"
        return ""
