"""The fake provider's model of Anthropic prompt caching (the truth the cost tests compare against)."""

from __future__ import annotations

from interlock.fakeprovider.model import Reply
from interlock.fakeprovider.prompt_cache import PromptCache


def body(system_ttl: str | None, user: str, tail_ttl: str | None = None) -> dict:
    sys_block = {"type": "text", "text": "S" * 4000, **({"cache_control": {"type": "ephemeral", "ttl": system_ttl}}
                                                        if system_ttl else {})}
    msg = {"type": "text", "text": user, **({"cache_control": {"type": "ephemeral", "ttl": tail_ttl}} if tail_ttl else {})}
    return {"model": "m", "system": [sys_block], "messages": [{"role": "user", "content": [msg]}]}


def reply(n: int) -> Reply:
    return Reply(("x",), None, n, 1, 0, truncated=False)


def test_write_then_read_the_same_prefix_at_the_same_size() -> None:
    cache = PromptCache()
    first = cache.apply(body("5m", "hello"), reply(1100), now=0)
    assert first.cached_tokens == 0 and first.cache_write_5m > 0 and first.cache_write_1h == 0
    again = cache.apply(body("5m", "a much longer question this time " * 20), reply(1400), now=10)
    assert again.cached_tokens == first.cache_write_5m  # the prefix costs the same every time
    assert again.cache_write_5m == 0


def test_ttls_are_split_and_expire() -> None:
    cache = PromptCache()
    r = cache.apply(body("1h", "q" * 400, tail_ttl="5m"), reply(1200), now=0)
    assert r.cache_write_1h > 0 and r.cache_write_5m > 0
    assert r.cache_write_1h + r.cache_write_5m + r.cached_tokens <= 1200
    later = cache.apply(body("1h", "other"), reply(1100), now=600)  # past 5 minutes, within the hour
    assert later.cached_tokens == r.cache_write_1h
    gone = cache.apply(body("1h", "other"), reply(1100), now=600 + 3601)
    assert gone.cached_tokens == 0 and gone.cache_write_1h > 0


def test_no_breakpoint_no_cache() -> None:
    r = PromptCache().apply(body(None, "hi"), reply(100), now=0)
    assert (r.cached_tokens, r.cache_write_5m, r.cache_write_1h) == (0, 0, 0)
