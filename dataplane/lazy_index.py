"""A lookup table whose entries are built on first use (issue 16: cold start with 100,000 keys).

Booting from disk used to build every key's KeyEntry and every key's budget and rate-limit tuple before the
node could serve: seconds at 100,000 keys, for entries most of which no request asks for in the first
minutes. `LazyIndex` holds the raw protobuf per key and builds an entry the first time it is looked up; key
deltas replace or drop entries exactly as they do in a plain dict. Iterating or sizing it builds everything
(tests, diagnostics; never the request path).

Not thread-safe: build it anywhere, then use it from the event loop only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from typing import Generic, TypeVar

K = TypeVar("K")
S = TypeVar("S")
V = TypeVar("V")
_MISSING: object = object()


class LazyIndex(MutableMapping[K, V], Generic[K, S, V]):
    """`source`: key -> raw item; `build(item)` -> entry, or None when the item yields no entry (a key with no
    budgets has no budgets_by_key entry). The logical content is the built entries plus build(item) for every
    item still in `source`."""

    __slots__ = ("_build", "_built", "_source")

    def __init__(self, source: dict[K, S], build: Callable[[S], V | None]):
        self._source = source
        self._build = build
        self._built: dict[K, V] = {}

    def get(self, key: K, default: V | None = None) -> V | None:  # type: ignore[override]
        built = self._built.get(key, _MISSING)
        if built is not _MISSING:
            return built  # type: ignore[return-value]
        item = self._source.pop(key, _MISSING)
        if item is _MISSING:
            return default
        value = self._build(item)  # type: ignore[arg-type]
        if value is None:
            return default
        self._built[key] = value
        return value

    def __getitem__(self, key: K) -> V:
        value = self.get(key, _MISSING)  # type: ignore[arg-type]
        if value is _MISSING:
            raise KeyError(key)
        return value  # type: ignore[return-value]

    def __contains__(self, key: object) -> bool:
        return self.get(key, _MISSING) is not _MISSING  # type: ignore[arg-type]

    def __setitem__(self, key: K, value: V) -> None:
        self._source.pop(key, None)
        self._built[key] = value

    def __delitem__(self, key: K) -> None:
        if key not in self:
            raise KeyError(key)
        del self._built[key]

    def __bool__(self) -> bool:  # without building everything (BudgetIndex.empty is asked per request)
        return bool(self._built) or any(self.get(key, _MISSING) is not _MISSING  # type: ignore[arg-type]
                                        for key in list(self._source))

    def materialize(self) -> None:
        for key in list(self._source):
            self.get(key)

    def __iter__(self) -> Iterator[K]:
        self.materialize()
        return iter(self._built)

    def __len__(self) -> int:
        self.materialize()
        return len(self._built)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, LazyIndex):
            other.materialize()
            other = other._built
        self.materialize()
        return self._built == other

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"LazyIndex({len(self._built)} built, {len(self._source)} not yet)"
