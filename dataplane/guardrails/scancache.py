"""Scan only what was not scanned before: a bounded cache of each string's findings, keyed by a hash of it.

Agents resend the whole conversation every turn, so turn N's body is turn N-1's plus a few new strings. Each
string of the walked body (TextIndex.parts) is looked up by a keyed hash of it (see `digests`); only the strings
not seen before (and the short ones, cheaper to scan than to hash) are joined and scanned, and each one's
findings are stored under its key. What is stored is the key and the findings' (rule, start, end) within the
string, never the text. One cache per compiled guardrail, so a new snapshot (new rules, new guardrail policy)
starts empty: a result is never reused across a policy change.

A string's findings do not depend on its neighbours because no built-in rule matches across the walk's
separator (walk.SEP). A custom regex that can (e.g. `[\\s\\S]`) may find a match spanning two strings when they
are scanned together; such a finding is kept, and the strings it touches are not cached.
"""

from __future__ import annotations

import hashlib
import sys
import time
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Callable

from dataplane.guardrails.engine import Finding, Scanner
from dataplane.guardrails.walk import SEP, TextIndex

_ENTRY_BYTES = 200  # an entry's approximate footprint: dict slot, key, empty tuple, LRU links
_FINDING_BYTES = 120  # each stored (rule, start, end)

Stored = tuple[tuple[str, int, int], ...]
Key = int | bytes
_MASK64 = (1 << 64) - 1


class ScanCache:
    """LRU of key -> findings within that string; bounded by an estimate of its memory in bytes."""

    __slots__ = ("_entries", "_used", "hits", "max_bytes", "misses")

    def __init__(self, max_bytes: int = 8 << 20) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Key, Stored] = OrderedDict()
        self._used = 0
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def used_bytes(self) -> int:
        return self._used

    def get(self, key: Key) -> Stored | None:
        got = self._entries.get(key)
        if got is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return got

    def put(self, key: Key, found: Stored) -> None:
        self.put_many({key: found})

    def put_many(self, items: dict[Key, Stored]) -> None:
        """Store answers (one dict update), then drop the least recently used past the byte bound."""
        entries = self._entries
        items = {k: v for k, v in items.items() if k not in entries}
        self._used += sum(_ENTRY_BYTES + _FINDING_BYTES * len(v) for v in items.values())
        entries.update(items)
        while self._used > self.max_bytes and entries:
            _, old = entries.popitem(last=False)
            self._used -= _ENTRY_BYTES + _FINDING_BYTES * len(old)


MIN_CHARS = 256  # shorter strings are scanned every time: hashing and looking one up costs about as much
SMALL_BODY = 8192  # below this the whole text is one cheap DFA pass: the cache would only add work


def digests(index: TextIndex) -> list[Key | None]:
    """Each part's key (None for a short one), computed once per walked body whatever the guardrail count.

    The key is the string's length and its SipHash-1-3 (Python's own str hash, keyed by the process's random
    hash secret: ~3x cheaper than SHA-256, and no one outside the process can make two strings collide on
    purpose); where hash randomisation is off (PYTHONHASHSEED set) that secret is known, so SHA-256 instead."""
    if index.digests is None:
        parts = index.parts
        if sys.flags.hash_randomization and sys.hash_info.algorithm.startswith("siphash"):
            index.digests = [(hash(p) & _MASK64) << 32 | len(p) if len(p) >= MIN_CHARS else None for p in parts]
        else:
            sha = hashlib.sha256
            index.digests = [sha(p.encode("utf-8", "surrogatepass")).digest() if len(p) >= MIN_CHARS else None
                             for p in parts]
    return index.digests


def scan_index(scanner: Scanner, cache: ScanCache | None, index: TextIndex, deadline: float | None = None,
               clock: Callable[[], float] = time.perf_counter) -> list[Finding]:
    """The scanner's findings in index.text (same offsets as scanner.scan(index.text)), scanning only the
    strings the cache has no answer for; the answers for those are then stored."""
    if cache is None or len(index.text) < SMALL_BODY:
        return _scan_all(scanner, index.text, deadline, clock)
    parts, starts = index.parts, index.starts
    known: list[Finding] = []
    todo: list[int] = []  # parts to scan, in order
    keys: dict[int, Key] = {}
    for i, k in enumerate(digests(index)):
        if k is None:
            todo.append(i)
            continue
        got = cache.get(k)
        if got is None:
            todo.append(i)
            keys[i] = k
        elif got:
            base = starts[i]
            known.extend(Finding(rule, base + s, base + e) for rule, s, e in got)
    if not todo:
        return known
    if len(todo) == len(parts):
        text, sub_starts = index.text, starts
    else:
        text = SEP.join([parts[i] for i in todo])
        sub_starts, pos = [], 0
        for i in todo:
            sub_starts.append(pos)
            pos += len(parts[i]) + len(SEP)
    found = _scan_all(scanner, text, deadline, clock)
    per: dict[int, list[tuple[str, int, int]]] = {}
    spanning: set[int] = set()
    out = known
    for f in found:
        a = bisect_right(sub_starts, f.start) - 1
        b = bisect_right(sub_starts, max(f.end - 1, f.start)) - 1
        i, j = todo[a], todo[b]
        s, e = f.start - sub_starts[a], f.end - sub_starts[b]
        out.append(Finding(f.rule, starts[i] + s, starts[j] + e))
        if a == b:
            per.setdefault(i, []).append((f.rule, s, e))
        else:  # a custom pattern matched across strings: neither string's answer stands on its own
            spanning.update(todo[a:b + 1])
    cache.put_many({k: tuple(per.get(i, ())) for i, k in keys.items() if i not in spanning})
    if known and found:
        out.sort(key=lambda f: f.start)
    return out


def _scan_all(scanner: Scanner, text: str, deadline: float | None, clock: Callable[[], float]) -> list[Finding]:
    # one pass answers the common case (no candidate at all) without the scan's setup
    try:
        raw, utf8 = text.encode("utf-8"), True
    except UnicodeEncodeError:  # a lone surrogate: not UTF-8, so RE2 (bytes-tolerant) answers the pre-check
        raw, utf8 = text.encode("utf-8", "surrogatepass"), False
    if not scanner.maybe(raw, utf8):
        return []
    return scanner.scan(text, deadline, clock, raw=raw)
