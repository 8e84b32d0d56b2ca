"""One multi-pattern scan over a text: every enabled rule compiled into a single alternation, once per snapshot.

The engine is RE2 (google-re2) when installed: linear time in the text whatever the patterns (a custom regex
in policy cannot make the scan catastrophic), and one DFA pass for the whole rule set. Python's re is the
fallback (and is what validates rules, since it reports error positions). docs/guardrails.md has the figures.
Each candidate is then confirmed with its own rule (the secret's span) and validator.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from dataplane.guardrails import prefilter
from dataplane.guardrails.checks import looks_fake
from dataplane.guardrails.rules import CHECKS, Rule

try:  # optional: the engine is chosen by what is installed, the results are the same
    import re2 as _re2
except ImportError:  # pragma: no cover - exercised where google-re2 is not installed
    _re2 = None

SLOW_ENGINE_WARNING = (
    "google-re2 is not installed: guardrails scan with Python's re, 50-300x slower on large requests (a 100 KB "
    "request takes 0.2-1 s instead of ~1 ms) and without the linear-time guarantee against costly custom regexes; "
    "install it with `pip install google-re2` (interlock_guardrail_engine_fallback is 1 until then)")


def linear_engine() -> bool:
    """Whether google-re2 (one linear-time DFA pass per scan) is available, rather than the Python re fallback."""
    return _re2 is not None


_SECRET_GROUP = re.compile(r"\(\?P<s>")
_INLINE_FLAGS = re.compile(r"^\(\?i\)")


# (raw, pos, endpos, before) -> (rule index, start, end) of each candidate in raw[pos:endpos] starting before `before`
Finder = Callable[[bytes, int, int, int], Iterator[tuple[int, int, int]]]


class ScanTimeout(Exception):
    """A scan ran past its time budget. RE2 is linear in the text, but candidates are validated one by one in
    Python, so a hostile body full of near-misses is bounded by time too; the guardrail's fail mode decides."""


@dataclass(frozen=True, slots=True)
class Finding:
    rule: str
    start: int
    end: int


class Scanner:
    """Finds every rule's matches in a text; immutable once built.

    Two steps, the second only on candidates (rare): (1) one pass of the combined alternation (each rule a named
    group: which one matched); (2) that rule alone, in Python re, for where the secret is, then its validator."""

    __slots__ = ("_checks", "_combined", "_fake", "_find", "_pre", "_rules", "_single", "engine", "precheck",
                 "rule_ids")

    def __init__(self, rules: Sequence[Rule], *, engine: str = "auto", precheck: str = "auto") -> None:
        """engine: "auto" (RE2 when installed), "re2" or "re"; precheck: "auto" (Hyperscan when installed) or
        "re2"."""
        self._rules = tuple(rules)
        self.rule_ids = tuple(r.id for r in rules)
        bodies = []
        for r in self._rules:
            body = _SECRET_GROUP.sub("(?:", r.pattern)
            if _INLINE_FLAGS.match(body):  # a scoped flag group works in both engines, a global one does not
                body = "(?i:" + body[4:] + ")"
            bodies.append(body)
        combined = "|".join(f"(?P<r{i}>{b})" for i, b in enumerate(bodies)) or "(?!)"
        self._single = tuple(re.compile(r.pattern) for r in self._rules)
        if _re2 is not None and engine in ("auto", "re2"):
            opts = _re2.Options()
            opts.max_mem = 64 << 20  # the DFA for ~70 rules fits comfortably; RE2 falls back to NFA beyond it
            self._combined: Any = _re2.compile(combined.encode(), opts)  # bytes: no re-encoding per call
            # the yes/no pre-check: no groups, so RE2 answers from its DFA without building 60 spans
            pre = _re2.compile("|".join(f"(?:{b})" for b in bodies).encode(), opts)._regexp  # no groups
            check = _re2_check(pre)
            self._find: Finder = _re2_finder(self._combined, pre, bodies, opts)
            self.engine = "re2"
            # Hyperscan, when installed, answers the pre-check (dataplane/guardrails/prefilter.py says why)
            fast = None if precheck == "re2" else prefilter.build(bodies, lambda idx: check if len(idx) == len(bodies) else _re2_check(
                _re2.compile("|".join(f"(?:{bodies[i]})" for i in idx).encode(), opts)._regexp))
            self._pre: prefilter.Maybe = fast or (lambda raw, utf8: check(raw))
            self.precheck = "hyperscan" if fast is not None else "re2"
        else:
            self._combined = re.compile(combined.encode())
            search = self._combined.search
            self._pre = lambda raw, utf8: search(raw) is not None
            self._find = _re_finder(self._combined)
            self.engine = self.precheck = "re"
        self._checks: tuple[Callable[[str], bool] | None, ...] = tuple(CHECKS.get(r.check) for r in self._rules)
        self._fake = tuple(r.category == "secret" for r in self._rules)  # example/test keys are not findings

    def maybe(self, raw: bytes, utf8: bool = True) -> bool:
        """Whether any rule has a candidate in these bytes (one pass, no validation): the cheap pre-check.
        utf8=False: the bytes are not valid UTF-8 (a lone surrogate, encoded with surrogatepass)."""
        return self._pre(raw, utf8)

    def scan(self, text: str, deadline: float | None = None,
             clock: Callable[[], float] = time.perf_counter, *, raw: bytes | None = None) -> list[Finding]:
        """Every confirmed finding, left to right. A candidate its validator rejects (e.g. `password = getPassword()`)
        does not hide what follows inside it: that span is scanned again from its second character.
        Past `deadline` (on `clock`), checked at each candidate, raises ScanTimeout. `raw`: the text's UTF-8
        (surrogatepass) when the caller already has it."""
        if raw is None:
            raw = text.encode("utf-8", "surrogatepass")
        out: list[Finding] = []
        chars = None if len(raw) == len(text) else _CharOffsets(raw)
        self._scan(raw, 0, len(raw), len(raw), text, chars, out, 0, deadline, clock)
        return out

    def _scan(self, raw: bytes, pos: int, endpos: int, before: int, text: str, chars: _CharOffsets | None,
              out: list[Finding], depth: int, deadline: float | None, clock: Callable[[], float]) -> None:
        """Candidates in raw[pos:endpos] (the whole text as context: \\b and $ see the neighbours) that start
        before byte `before` (a rescan only looks for what starts inside the rejected candidate)."""
        rules, single, checks, fake = self._rules, self._single, self._checks, self._fake
        for i, bstart, bend in self._find(raw, pos, endpos, before):
            if deadline is not None and clock() > deadline:
                raise ScanTimeout(f"scan stopped at byte {bstart} of {len(raw)}: time budget exceeded")
            start = bstart if chars is None else chars.at(bstart)
            if out and start < out[-1].end:
                continue  # already found by the rescan of an earlier rejected candidate
            sm = single[i].match(text, start)  # the rule alone, at the same place: where the secret is
            if sm is None:
                continue
            s, e = (sm.start("s"), sm.end("s")) if "s" in sm.re.groupindex else sm.span()
            v = text[s:e]
            chk = checks[i]
            if (chk is not None and not chk(v)) or (fake[i] and looks_fake(v)):
                if depth < 2 and bend - bstart > 1:
                    # A secret hidden in a rejected `NAME = value` candidate starts in the value, not in the
                    # name: rescan from the value (else from the next byte), bounded to the candidate's first bytes.
                    skip = (s - start if chars is None else len(text[start:s].encode("utf-8", "surrogatepass"))) or 1
                    at = bstart + min(skip, bend - bstart - 1)
                    self._scan(raw, at, min(len(raw), at + min(bend - at, 256) + 255), bend, text, chars, out,
                               depth + 1, deadline, clock)
                continue
            out.append(Finding(rules[i].id, s, e))


class _CharOffsets:
    """Byte offset -> character offset in a non-ASCII text, decoding only the bytes since the last answer
    (candidates come left to right), so a 100 KB text with one emoji does not cost a decode per candidate."""

    __slots__ = ("_b", "_c", "_raw")

    def __init__(self, raw: bytes) -> None:
        self._raw = raw
        self._b = self._c = 0

    def at(self, b: int) -> int:
        if b < self._b:
            self._b = self._c = 0
        chunk = self._raw[self._b:b]
        try:  # surrogatepass: a lone surrogate (3 bytes) is one character of the text, as it is in the str
            self._c += len(chunk.decode("utf-8", "surrogatepass"))
        except UnicodeDecodeError:  # RE2 started a match inside one (invalid UTF-8): approximate, never raise
            self._c += len(chunk.decode("utf-8", "ignore"))
        self._b = b
        return self._c


def _re2_check(regexp: Any) -> Callable[[bytes], bool]:
    unanchored = _re2._re2.RE2.Anchor.UNANCHORED
    return lambda raw: regexp.Match(unanchored, raw, 0, len(raw))[0][0] >= 0


def _re2_finder(combined: Any, locate: Any, bodies: Sequence[str], opts: Any) -> Finder:
    """(rule index, start, end) of each candidate starting before `before`. `locate` (no groups: DFA only)
    finds where the next candidate is; an RE2 Set says which rules match exactly that span (also DFA only,
    ~0.5 us instead of ~6-10 us for the grouped pattern's submatches). The Set sees the candidate with one byte
    of context each side (`\\C` = any byte), so \\b, ^ and $ at its edges mean what they mean in the text; a
    candidate at the very start or end of the text asks the grouped pattern instead. The winner of a
    leftmost-first alternation is the lowest rule matching at the start, which is also the lowest one matching
    exactly that span."""
    regexp = combined._regexp
    anchor = _re2._re2.RE2.Anchor
    unanchored, both = anchor.UNANCHORED, anchor.ANCHOR_BOTH
    names = {(n.decode() if isinstance(n, bytes) else n): g for n, g in combined.groupindex.items()}
    rule_of = {g: int(name[1:]) for name, g in names.items() if name[:1] == "r" and name[1:].isdigit()}
    padded = _re2._re2.Set(both, opts)
    for b in bodies:
        if padded.Add(f"\\C(?:{b})\\C".encode()) < 0:
            raise ValueError(f"RE2 Set refused {b!r}")
    padded.Compile()
    which = padded.Match

    def grouped(raw: bytes, start: int, stop: int) -> int:
        spans = regexp.Match(both, raw, start, stop)
        # the rule's group spans the whole match and precedes any group inside it; earlier rules' are unset
        return rule_of[spans.index(spans[0], 1)]

    def find(raw: bytes, pos: int, end: int, before: int) -> Iterator[tuple[int, int, int]]:
        size = len(raw)
        while pos <= end:
            start, stop = locate.Match(unanchored, raw, pos, end)[0]
            if start < 0 or start >= before:
                return
            ids = which(raw[start - 1:stop + 1]) if 0 < start and stop < size else None
            yield (min(ids) if ids else grouped(raw, start, stop)), start, stop
            pos = stop if stop > start else stop + 1
    return find


def _re_finder(combined: re.Pattern[bytes]) -> Finder:
    def find(raw: bytes, pos: int, end: int, before: int) -> Iterator[tuple[int, int, int]]:
        for m in combined.finditer(raw, pos, end):
            if m.start() >= before:
                return
            if m.lastgroup is not None:
                yield int(m.lastgroup[1:]), m.start(), m.end()
    return find


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
