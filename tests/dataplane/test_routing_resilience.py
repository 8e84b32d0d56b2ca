"""Circuit breaker state machine, backoff, retry-after and the attempt planner, all on an injected clock."""

from __future__ import annotations

import email.utils
import random
from dataclasses import replace

from dataplane.routing.attempts import AttemptPlanner
from dataplane.routing.backoff import backoff_s, retry_after_s
from dataplane.routing.breaker import CLOSED, HALF_OPEN, OPEN, BreakerConfig, Breakers, CircuitBreaker
from dataplane.routing.failure import (
    CONTEXT_LENGTH,
    OVERLOADED,
    RATE_LIMITED,
    UPSTREAM_4XX,
    UPSTREAM_5XX,
    retryable_classes,
    status_class,
)
from dataplane.routing.table import Plan, RuntimeDeployment, Target

CFG = BreakerConfig(failures=3, failure_rate=0.5, min_requests=10, window_s=10, cooldown_s=5)


def test_consecutive_failures_open_then_half_open_probe_closes() -> None:
    b = CircuitBreaker(CFG, now=0)
    for t in (1, 2):
        assert b.allow(t)
        b.record(False, t)
    assert b.state == CLOSED
    b.record(False, 3)
    assert b.state == OPEN and not b.allow(4) and b.retry_in(4) == 4
    assert b.current(8.1) == HALF_OPEN and b.state == OPEN  # peeking does not take the probe
    assert b.allow(8.1)  # the single probe
    assert not b.allow(8.2)  # others wait while it is in flight
    b.record(True, 8.3)
    assert b.state == CLOSED and b.allow(8.4) and b.consecutive == 0


def test_failed_probe_reopens_for_another_cooldown() -> None:
    b = CircuitBreaker(CFG, now=0)
    for t in range(3):
        b.record(False, t)
    assert b.allow(7.5)
    b.record(False, 7.6)
    assert b.state == OPEN and not b.allow(12) and b.allow(12.7)


def test_probe_released_without_outcome_lets_another_probe_through() -> None:
    b = CircuitBreaker(CFG, now=0)
    for t in range(3):
        b.record(False, t)
    assert b.allow(10) and not b.allow(10)
    b.release(10.1)
    assert b.allow(10.2)


def test_failure_rate_opens_without_consecutive_streak() -> None:
    b = CircuitBreaker(CFG, now=0)
    for i in range(10):  # alternate: never 3 in a row, but 50% of 10 requests
        b.record(i % 2 == 0, 0.1 * i)
    assert b.state == OPEN


def test_failure_rate_window_rolls_over() -> None:
    b = CircuitBreaker(replace(CFG, failures=100), now=0)
    for i in range(8):
        b.record(i % 2 == 0, 0.1 * i)  # 4 failures of 8: below min_requests
    for i in range(8):
        b.record(True, 11 + 0.1 * i)  # new window: the old failures are forgotten
    b.record(False, 12)
    b.record(False, 12.1)
    assert b.state == CLOSED


def test_breakers_follow_new_config_and_can_be_disabled() -> None:
    now = [0.0]
    bs = Breakers(lambda: now[0])
    assert bs.get("m/d", BreakerConfig(enabled=False)) is None
    b = bs.get("m/d", CFG)
    assert b is not None and bs.get("m/d", replace(CFG, failures=1)) is b and b.config.failures == 1
    assert bs.state("m/other") == "unknown" and bs.state("m/d") == CLOSED


def test_backoff_is_exponential_bounded_and_jittered() -> None:
    assert [backoff_s(i, 0.1, 1.0, 0.999999) for i in range(6)] == [
        0.1 * 0.999999, 0.2 * 0.999999, 0.4 * 0.999999, 0.8 * 0.999999, 1.0 * 0.999999, 1.0 * 0.999999]
    assert backoff_s(3, 0.1, 1.0, 0.0) == 0.0
    assert backoff_s(10_000, 0.1, 2.0, 0.5) == 1.0


def test_retry_after_forms() -> None:
    assert retry_after_s({"retry-after": "3"}, 0) == 3
    assert retry_after_s({"retry-after-ms": "250", "retry-after": "3"}, 0) == 0.25
    date = email.utils.formatdate(1_000_010, usegmt=True)
    assert retry_after_s({"retry-after": date}, 1_000_000) == 10
    assert retry_after_s({"retry-after": "soon"}, 0) is None and retry_after_s({}, 0) is None


def test_status_classes() -> None:
    assert status_class(429) == RATE_LIMITED and status_class(529) == OVERLOADED and status_class(503) == UPSTREAM_5XX
    assert status_class(400, b'{"error":{"code":"context_length_exceeded"}}') == CONTEXT_LENGTH
    assert status_class(400, b'{"error":{"message":"prompt is too long: 210000 tokens"}}') == CONTEXT_LENGTH
    assert status_class(400, b'{"error":{"message":"bad tool schema"}}') == UPSTREAM_4XX
    assert CONTEXT_LENGTH not in retryable_classes(["429", "5xx"])
    assert CONTEXT_LENGTH in retryable_classes(["context_length"])


def _dep(name: str, weight: int = 1) -> RuntimeDeployment:
    return RuntimeDeployment(f"m/{name}", name, None, weight, "", CFG)  # type: ignore[arg-type]


def test_planner_retries_with_backoff_honouring_retry_after_then_falls_back() -> None:
    a, fb = _dep("a"), _dep("fb")
    plan = Plan("r", (Target("m", (a,)), Target("f", (fb,))), retryable_classes(["429"]), retries=2,
                backoff_s=0.1, max_backoff_s=1.0, max_retry_after_s=3.0)
    p = AttemptPlanner(plan, constraint=None, breakers=Breakers(lambda: 0.0), rng=random.Random(3))
    first = p.next(0.0)
    assert first is not None and first.deployment is a and first.delay_s == 0
    p.failed(a, 2.0)  # provider said retry-after: 2
    second = p.next(0.0)
    assert second is not None and second.deployment is a and second.delay_s == 2.0  # the hint beats backoff
    p.failed(a, 5.0)  # now it asks for longer than max_retry_after: don't wait, fall back
    third = p.next(2.0)
    assert third is not None and third.deployment is fb and third.delay_s == 0
    p.failed(fb, None)
    fourth = p.next(2.0)
    assert fourth is not None and fourth.deployment is fb and 0 <= fourth.delay_s <= 0.1
    p.failed(fb, None)
    fifth = p.next(2.1)
    assert fifth is not None and 0 <= fifth.delay_s <= 0.2
    assert p.next(2.5) is None


def test_planner_respects_total_deadline_and_open_circuits() -> None:
    a, b, fb = _dep("a"), _dep("b"), _dep("fb")
    plan = Plan("r", (Target("m", (a, b)), Target("f", (fb,))), retryable_classes(["5xx"]), retries=1,
                backoff_s=1.0, max_backoff_s=1.0)
    breakers = Breakers(lambda: 0.0)
    br = breakers.get(b.id, CFG)
    assert br is not None
    for t in range(3):
        br.record(False, t)  # b is open
    rng = random.Random(0)
    rng.random = lambda: 0.9  # type: ignore[method-assign]  # backoff 0.9 s
    p = AttemptPlanner(plan, constraint=None, breakers=breakers, rng=rng, deadline=3.5)
    got = []
    while (n := p.next(3.0)) is not None:  # half a second left: no room for a retry with backoff
        got.append((n.deployment.name, n.delay_s))
        p.failed(n.deployment, None)
    assert got == [("a", 0.0), ("fb", 0.0)] and p.skipped_open == [b]
    assert p.next(3.5) is None  # past the deadline: nothing more
