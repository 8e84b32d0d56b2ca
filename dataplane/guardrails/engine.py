"""One multi-pattern scan over a text: every enabled rule compiled into a single alternation, once per snapshot.

The engine is RE2 (google-re2) when installed: linear time in the text whatever the patterns (a custom regex
in policy cannot make the scan catastrophic), and one DFA pass for the whole rule set. Python's re is the
fallback (and is what validates rules, since it reports error positions). docs/guardrails.md has the figures.
Each candidate is then confirmed with its own rule (the secret's span) and validator.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from dataplane.guardrails.rules import CHECKS, Rule

try:  # optional: the engine is chosen by what is installed, the results are the same
    import re2 as _re2
except ImportError:  # pragma: no cover - exercised where google-re2 is not installed
    _re2 = None

_SECRET_GROUP = re.compile(r"\(\?P<s>")
_INLINE_FLAGS = re.compile(r"^\(\?i\)")


@dataclass(frozen=True, slots=True)
class Finding:
    rule: str
    start: int
    end: int


class Scanner:
    """Finds every rule's matches in a text; immutable once built."""

    __slots__ = ("_checks", "_combined", "_engine", "_rules", "_single", "engine", "rule_ids")

    def __init__(self, rules: Sequence[Rule], *, engine: str = "auto") -> None:
        self._rules = tuple(rules)
        self.rule_ids = tuple(r.id for r in rules)
        parts = []
        for i, r in enumerate(self._rules):
            body = _SECRET_GROUP.sub("(?:", r.pattern)
            if _INLINE_FLAGS.match(body):  # a scoped flag group works in both engines, a global one does not
                body = "(?i:" + body[4:] + ")"
            parts.append(f"(?P<r{i}>{body})")
        combined = "|".join(parts) or "(?!)"
        use_re2 = _re2 is not None and engine in ("auto", "re2")
        if use_re2:
            opts = _re2.Options()
            opts.max_mem = 64 << 20  # the DFA for ~70 rules fits comfortably; RE2 falls back to NFA beyond it
            self._combined: Any = _re2.compile(combined, opts)
            self.engine = "re2"
        else:
            self._combined = re.compile(combined)
            self.engine = "re"
        self._single = tuple(re.compile(r.pattern) for r in self._rules)
        self._checks: tuple[Callable[[str], bool] | None, ...] = tuple(CHECKS.get(r.check) for r in self._rules)

    def scan(self, text: str) -> list[Finding]:
        out: list[Finding] = []
        rules, single, checks = self._rules, self._single, self._checks
        for m in self._combined.finditer(text):
            name = m.lastgroup
            if name is None:  # re2 reports the outermost named group of the alternative that matched
                continue
            i = int(name[1:])
            start = m.start()
            sm = single[i].match(text, start)  # the rule alone, at the same place: where the secret is
            if sm is None:
                sm = single[i].search(text, start, m.end())
                if sm is None:
                    continue
            s, e = (sm.start("s"), sm.end("s")) if "s" in sm.re.groupindex else sm.span()
            chk = checks[i]
            if chk is not None and not chk(text[s:e]):
                continue
            out.append(Finding(rules[i].id, s, e))
        return out


def redact(text: str, findings: Iterable[Finding]) -> str:
    """Each finding replaced by a typed placeholder; overlapping findings merge into the first."""
    parts = []
    pos = 0
    for f in sorted(findings, key=lambda f: f.start):
        if f.start < pos:
            continue
        parts.append(text[pos:f.start])
        parts.append(f"[REDACTED:{f.rule}]")
        pos = f.end
    parts.append(text[pos:])
    return "".join(parts)


def validate_pattern(pattern: str) -> str | None:
    """None if the pattern compiles in both engines, else an error naming the position."""
    try:
        re.compile(pattern)
    except re.error as exc:
        return f"{exc.msg} at position {exc.pos}"
    if _re2 is not None:
        try:
            _re2.compile(pattern)
        except Exception as exc:  # re2 raises its own error type
            return f"not supported by the linear-time engine (no lookaround or backreferences): {exc}"
    return None
