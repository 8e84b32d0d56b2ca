"""Budget refusal messages say what happened: nothing left vs. not enough for this request's worst case,
and a lifetime budget reads 'lifetime', not 'lifetime lifetime'."""

from __future__ import annotations

from dataplane.budget.index import BudgetSpec
from dataplane.budget.refusal import budget_busy, budget_exhausted

PICO = 10**12


def _spec(window: str = "month", limit_usd: str = "0.002") -> BudgetSpec:
    return BudgetSpec(id="run", scope="key", scope_id="vk_1", window=window, timezone="UTC",
                      limit_pico=int(float(limit_usd) * PICO), limit_usd=limit_usd, offline_mode="fail_closed",
                      optimistic_pico=0)


def test_untouched_budget_too_small_for_the_request_says_so() -> None:
    err = budget_exhausted(_spec(), "2026-12", reset_ms=1_800_000_000_000, remaining_pico=2 * 10**9,
                           worst_pico=5 * 10**9, now_ms=1_700_000_000_000)
    assert err.status == 402
    assert "key 'vk_1' budget 'run' (month 2026-12) cannot cover this request: it may cost up to $0.005, " \
           "and $0.002 of $0.002 is left" in err.message, err.message
    assert "exhausted" not in err.message


def test_spent_budget_is_exhausted_and_lifetime_is_named_once() -> None:
    err = budget_exhausted(_spec("lifetime"), "lifetime", reset_ms=0, remaining_pico=0, worst_pico=10**9, now_ms=0)
    assert "(lifetime) is exhausted: $0 of $0.002 left; resets never (lifetime budget)" in err.message, err.message
    assert "lifetime lifetime" not in err.message
    busy = budget_busy(_spec("lifetime"), "lifetime", 10**9)
    assert "(lifetime) has $0.001 left" in busy.message, busy.message


def test_durations_round_instead_of_truncating() -> None:
    from interlock.cli.render import ago, until

    now = 1_700_000_000_000
    assert until(now + 2 * 3600_000 - 150, now) == "in 2h"  # `keys mint --ttl 2h`, printed a moment later
    assert until(now + 90 * 60_000, now) == "in 1h30m"
    assert until(now + 30 * 86400_000 - 5000, now) == "in 30d"
    assert until(now + 86400_000 + 4 * 3600_000, now) == "in 1d4h"
    assert ago(now - 3000, now) == "3s ago" and ago(now - 120_000, now) == "2m ago"
