"""Per-app mutable state: the fault schedule, request statistics, and the id sequence.

API keys never reach the stats: secret headers and `?key=` are redacted, and
only a SHA-256 of the presented key is kept, so tests can still assert which
key a gateway forwarded upstream.
"""

from __future__ import annotations

import hashlib
import itertools
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from .config import FakeProviderConfig, FaultRule
from .prompt_cache import PromptCache

SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "x-api-key", "x-goog-api-key", "api-key", "cookie",
                            "x-amz-security-token"})  # the last: an AWS STS session token, sent next to SigV4
SECRET_QUERY = frozenset({"key"})
REDACTED = "[redacted]"


def key_fingerprint(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def redact(items: Iterable[tuple[str, str]], secret: frozenset[str]) -> dict[str, str]:
    return {k.lower(): REDACTED if k.lower() in secret else v for k, v in items}


@dataclass
class _Pending:
    rule: FaultRule
    remaining: int | None


class FaultSchedule:
    def __init__(self, rules: Iterable[FaultRule] = ()) -> None:
        self._pending = [_Pending(r, r.count) for r in rules]

    def add(self, rule: FaultRule) -> None:
        self._pending.append(_Pending(rule, rule.count))

    def clear(self) -> None:
        self._pending.clear()

    def take(self, path: str) -> FaultRule | None:
        """Consume one use of the first rule matching `path` (rules apply in insertion order)."""
        for pending in self._pending:
            if pending.rule.path is None or path.startswith(pending.rule.path):
                if pending.remaining is not None:
                    pending.remaining -= 1
                    if pending.remaining == 0:
                        self._pending.remove(pending)
                return pending.rule
        return None

    def snapshot(self) -> list[dict[str, Any]]:
        return [{**p.rule.to_json(), "remaining": p.remaining} for p in self._pending]


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    api_key_sha256: str | None
    status: int | None = None  # filled in once the response is decided
    stream: bool | None = None
    usage: dict[str, int] | None = None  # {input_tokens, output_tokens, cached_tokens} as reported
    fault: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Stats:
    history_size: int = 100
    total: int = 0
    by_path: Counter[str] = field(default_factory=Counter)
    history: deque[RecordedRequest] = field(init=False)

    def __post_init__(self) -> None:
        self.history = deque(maxlen=self.history_size)

    def record(
        self,
        method: str,
        path: str,
        query: Mapping[str, str],
        headers: Iterable[tuple[str, str]],
        body: Any,
        api_key: str | None,
    ) -> RecordedRequest:
        entry = RecordedRequest(
            method=method,
            path=path,
            query=redact(query.items(), SECRET_QUERY),
            headers=redact(headers, SECRET_HEADERS),
            body=body,
            api_key_sha256=key_fingerprint(api_key) if api_key else None,
        )
        self.total += 1
        self.by_path[path] += 1
        self.history.append(entry)
        return entry

    def reset(self) -> None:
        self.total = 0
        self.by_path.clear()
        self.history.clear()

    def snapshot(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "by_path": dict(self.by_path),
            "last": self.history[-1].to_json() if self.history else None,
            "history": [r.to_json() for r in self.history],
        }


class ProviderState:
    def __init__(self, config: FakeProviderConfig) -> None:
        self.config = config
        self.faults = FaultSchedule(config.faults)
        self.stats = Stats(history_size=config.history_size)
        self.prompt_cache = PromptCache()  # used when config.prompt_cache (Anthropic messages)
        self._ids = itertools.count(1)

    def next_id(self) -> str:
        # Sequential, so ids are unique per server and reproducible across runs.
        return f"fake{next(self._ids):020d}"
