"""The scan's yes/no pre-check ("does any rule have a candidate in these bytes?") on Hyperscan, when installed.

Why: almost every request has no candidate at all, so this one pass over the text is most of what a guardrail
costs. On a live node under load (benchmarks/profile_gateway.py --guardrail) RE2's DFA pass over a 1 KB
request took ~5 µs, 2.5x its cost in a tight loop: between requests its state tables fall out of the CPU
caches. Hyperscan (SIMD literal matching, compact tables) does the same pass in ~1 µs. docs/guardrails.md has
the figures.

Sound by construction, never a missed candidate: Hyperscan may say yes where no rule matches (RE2 then finds
nothing), never no where one does.
- Every rule is compiled with HS_FLAG_PREFILTER: a construct Hyperscan cannot do exactly is widened, never
  narrowed.
- HS_FLAG_UTF8 makes counted repeats count characters, as RE2 does; text that is not valid UTF-8 (a lone
  surrogate) is answered by RE2 instead, since Hyperscan's UTF-8 mode requires valid input.
- A rule Hyperscan refuses outright (e.g. a custom regex it has no syntax for) is checked by RE2, in a second
  pass over only those rules.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

_hs: Any
try:  # optional: x86-64 wheels only; without it the pre-check is RE2's (same answers, slower)
    import hyperscan

    _hs = hyperscan
except ImportError:  # pragma: no cover - exercised where hyperscan is not installed
    _hs = None

Check = Callable[[bytes], bool]


def available() -> bool:
    return _hs is not None


def _stop(rule: int, start: int, end: int, flags: int, context: Any) -> bool:
    return True  # the first candidate answers the question: stop scanning (the scan raises ScanTerminated)


@functools.lru_cache(maxsize=64)
def _database(patterns: tuple[str, ...]) -> Any:
    """A pure function memoised: compiling the default secret set takes 80-180 ms, and every snapshot (and
    every guardrail) with the same rules has the same patterns, so a policy edit that leaves them alone costs
    no compile. A compiled database is immutable and safe to share; each check has its own scratch."""
    assert _hs is not None
    flags = _hs.HS_FLAG_PREFILTER | _hs.HS_FLAG_UTF8 | _hs.HS_FLAG_SINGLEMATCH | _hs.HS_FLAG_ALLOWEMPTY
    db = _hs.Database(mode=_hs.HS_MODE_BLOCK)
    db.compile(expressions=[p.encode() for p in patterns], ids=list(range(len(patterns))), elements=len(patterns),
               flags=[flags] * len(patterns))
    return db


class HyperscanCheck:
    """Yes/no over a set of patterns, in one Hyperscan block-mode scan."""

    __slots__ = ("_db", "_scratch")

    def __init__(self, patterns: Sequence[str]) -> None:
        self._db = _database(tuple(patterns))
        self._scratch = _hs.Scratch(self._db)  # per check: a scanner is used by one thread (the node's loop)

    def __call__(self, raw: bytes) -> bool:
        try:
            self._db.scan(raw, _stop, 0, None, self._scratch)  # positional: keywords cost ~0.4 µs a call
        except _hs.ScanTerminated:  # _stop ended it at the first candidate
            return True
        return False


def compiles(pattern: str) -> bool:
    try:
        HyperscanCheck([pattern])
    except Exception:  # hyperscan.error: no syntax for it (or a pattern too large)
        return False
    return True


Maybe = Callable[[bytes, bool], bool]  # (the text's UTF-8 bytes, whether they are valid UTF-8) -> any candidate


def build(bodies: Sequence[str], re2_check: Callable[[Sequence[int]], Check]) -> Maybe | None:
    """The pre-check over `bodies` (RE2 syntax, which Hyperscan shares for everything the built-in rules use),
    or None when Hyperscan is not installed. `re2_check(indexes)`: an RE2 yes/no over those rules, for the ones
    Hyperscan refuses and for text that is not valid UTF-8."""
    if _hs is None or not bodies:
        return None
    try:
        fast = HyperscanCheck(bodies)
        refused: list[int] = []
    except Exception:  # some rule it has no syntax for: find which, and leave those to RE2
        refused = [i for i, b in enumerate(bodies) if not compiles(b)]
        if len(refused) == len(bodies):
            return None
        fast = HyperscanCheck([b for i, b in enumerate(bodies) if i not in set(refused)])
    everything = re2_check(range(len(bodies)))
    rest = re2_check(refused) if refused else None

    scan, scratch, stopped = fast._db.scan, fast._scratch, _hs.ScanTerminated  # on every request: no lookups

    def maybe(raw: bytes, utf8: bool) -> bool:
        if not utf8:
            return everything(raw)
        try:
            scan(raw, _stop, 0, None, scratch)
        except stopped:  # a candidate
            return True
        return rest is not None and rest(raw)
    return maybe
