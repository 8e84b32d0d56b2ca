"""The rate-limit headers each SDK family reads on a 429 (pure): dialects pick theirs.

OpenAI clients read x-ratelimit-{limit,remaining,reset}-{requests,tokens} with resets like "6m0s";
Anthropic clients read anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset} with RFC 3339 resets.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def openai_reset(seconds: float) -> str:
    # OpenAI's own format: "1s", "6m0s", "250ms"
    if seconds < 1:
        return f"{max(1, int(seconds * 1000))}ms"
    s = math.ceil(seconds)
    return f"{s // 60}m{s % 60}s" if s >= 60 else f"{s}s"


def openai_headers(dim: str, limit: int, remaining: int, reset_ms: int, wait_s: float) -> list[tuple[str, str]]:
    return [(f"x-ratelimit-limit-{dim}", str(limit)), (f"x-ratelimit-remaining-{dim}", str(max(0, remaining))),
            (f"x-ratelimit-reset-{dim}", openai_reset(wait_s))]


def anthropic_headers(dim: str, limit: int, remaining: int, reset_ms: int, wait_s: float) -> list[tuple[str, str]]:
    return [(f"anthropic-ratelimit-{dim}-limit", str(limit)),
            (f"anthropic-ratelimit-{dim}-remaining", str(max(0, remaining))),
            (f"anthropic-ratelimit-{dim}-reset", iso(reset_ms))]
