"""Exact rollups (ingest.rollup*): the console's and CLI's answers from rollups equal the raw table's.

Real chDB. Truth is independent of the code under test: the Python sums over the distinct events
inserted, and the raw path (UsageQueryService with use_rollups=False, i.e. usage_by_time FINAL).
Covered: redelivery after a day was rolled, a late event for an already-rolled day (exact at once,
then rolled again), window edges that cut hours and days (UTC, events on the boundary microsecond),
tag groups including events without the tag or with an empty value, and a store without rollups.
"""

from __future__ import annotations

import random
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import clickhouse_connect
import pytest

from controlplane.console.data import ConsoleData
from ingest.clickhouse_writer import ClickHouseWriter, open_clickhouse
from ingest.queries import parse_dimension, parse_group_by, parse_where
from ingest.query_service import UsageQueryService
from ingest.rollup import Roller
from interlock_contracts.v1 import usage_pb2

HOUR_US, DAY_US = 3600 * 10**6, 86_400 * 10**6
# The services' clock: not on an hour, so every window's edges cut an hour and a day.
NOW_US = (int(time.time()) // 3600) * 3600 * 10**6 - 3 * HOUR_US + 17 * 60 * 10**6 + 23_456_789
TEAMS, MODELS, KEYS = ("platform", "payments", "search"), ("gpt-4o", "claude", "llama"), 7


def event(rng: random.Random, t: int, i: int) -> usage_pb2.UsageEvent:
    ok, model = i % 13 != 0, MODELS[i % 3]
    tags = {"task": f"T-{i % 6}" if i % 5 else "", "step": ("plan", "code")[i % 2]} if i % 4 else {}
    return usage_pb2.UsageEvent(
        event_id=uuid.UUID(int=rng.getrandbits(128)).hex, received_unix_us=t, done_unix_us=t + 10**6,
        team_id=TEAMS[i % 3], user_id=f"u{i % 5}", key_id=f"vk_{rng.randrange(KEYS)}", tags=tags,
        requested_model=model, model=model, provider="p-" + model, upstream_model=model + "-1", status=200 if ok else 429,
        error_class="" if ok else "rate_limited", input_tokens=rng.randrange(9000), output_tokens=rng.randrange(900),
        cost_usd=format(Decimal(rng.randrange(3 * 10**12)).scaleb(-12), "f") if ok else "", latency_ms=rng.randrange(900),
    )  # fmt: skip


def make_events(n: int, seed: int = 7) -> list[usage_pb2.UsageEvent]:
    """n events over the 9 days before NOW_US, plus events on the boundary microseconds of days and hours."""
    rng = random.Random(seed)
    times = [NOW_US - rng.randrange(1, 9 * DAY_US) for _ in range(n)]
    midnight = NOW_US // DAY_US * DAY_US
    for k in range(1, 9):  # on, and one microsecond before, UTC midnights and whole hours
        times += [midnight - k * DAY_US, midnight - k * DAY_US - 1, midnight - k * DAY_US + 5 * HOUR_US]
    times += [NOW_US - 24 * HOUR_US, NOW_US - 7 * DAY_US, NOW_US - 1]  # exactly on window starts
    return [event(rng, t, i) for i, t in enumerate(times)]


def truth(events: list[usage_pb2.UsageEvent], key: str, since: timedelta) -> dict[str, tuple[int, Decimal]]:
    start = NOW_US - since // timedelta(microseconds=1)
    acc: dict[str, list[Any]] = defaultdict(lambda: [0, Decimal(0)])
    for e in {e.event_id: e for e in events}.values():
        if start <= e.received_unix_us < NOW_US:
            v = acc[e.tags.get(key[4:], "") if key.startswith("tag:") else getattr(e, key)]
            v[0] += 1
            v[1] += Decimal(e.cost_usd or "0")
    return {k: (v[0], v[1]) for k, v in acc.items()}


@pytest.fixture(scope="module")
def dsn(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"chdb://{tmp_path_factory.mktemp('chdb')}"


@pytest.fixture
def store(dsn: str) -> Iterator[tuple[ClickHouseWriter, UsageQueryService, UsageQueryService, Roller]]:
    database = "r_" + uuid.uuid4().hex[:12]
    with open_clickhouse(dsn, database=database) as writer:
        clock = lambda: NOW_US / 1e6  # noqa: E731
        with UsageQueryService(clickhouse_connect.get_client(dsn=dsn), database, clock=clock) as fast, \
                UsageQueryService(clickhouse_connect.get_client(dsn=dsn), database, clock=clock,
                                  use_rollups=False) as raw:  # fmt: skip
            yield writer, fast, raw, Roller(clickhouse_connect.get_client(dsn=dsn), database, grace_s=0)


def spend_map(svc: UsageQueryService, by: str, since: timedelta, where: tuple[str, ...] = ()) -> dict[str, Any]:
    r = svc.spend(parse_group_by(by), since, parse_where(where), limit=10_000)
    return {"rows": [(x.group, x.requests, x.errors, x.input_tokens, x.output_tokens, x.cost_usd, x.share_pct)
                     for x in r.rows], "groups": r.groups, "total": r.total}


QUESTIONS = [("team", timedelta(days=7), ()), ("model", timedelta(hours=24), ("team=payments",)),
             ("team,model", timedelta(days=30), ()), ("key", timedelta(days=7), ("team=search",)),
             ("tag:task", timedelta(days=7), ()), ("tag:task", timedelta(days=30), ()), ("tag:step", timedelta(hours=30), ()),
             ("user", timedelta(days=3), ()), ("node", timedelta(days=7), ())]  # fmt: skip


def same_answers(fast: UsageQueryService, raw: UsageQueryService) -> None:
    for by, since, where in QUESTIONS:
        assert spend_map(fast, by, since, where) == spend_map(raw, by, since, where), (by, since, where)
    f, r = ConsoleData(fast), ConsoleData(raw)
    assert f.periods() == r.periods()
    assert f.periods(parse_where(["team=platform"])) == r.periods(parse_where(["team=platform"]))
    for by, span, gran in (("team", timedelta(days=7), "hour"), ("model", timedelta(days=7), "day"),
                           ("tag:task", timedelta(days=30), "day"), ("key", timedelta(days=9), "week"),
                           ("tag:task", timedelta(days=7), "hour"),
                           ("team", timedelta(hours=6), "5m")):  # fmt: skip
        assert f.top_series(by, span, gran) == r.top_series(by, span, gran), (by, gran)
    task = parse_dimension("tag:task")  # top groups without '': the rest folds in as total minus top
    for span, gran in ((timedelta(days=30), "day"), (timedelta(days=7), "hour")):  # hourly: totals - raw top
        assert f.series(task, span, gran, ["T-1", "T-3"]) == r.series(task, span, gran, ["T-1", "T-3"])
        assert f.series(task, span, gran, ["T-2", ""]) == r.series(task, span, gran, ["T-2", ""])
    start = NOW_US - 8 * DAY_US - 12345
    for step in (3600, 86_400):
        assert f.burn(start, parse_where(["team=search"]), step) == r.burn(start, parse_where(["team=search"]), step)


def used(svc: UsageQueryService, by: str, since: timedelta) -> str:
    """Which table the spend query reads its bulk from (the rollups' planner, not a guess)."""
    q = svc.rollups.spend(parse_group_by(by), svc.window(since))
    return next((t for t in ("usage_rollup_hour", "usage_rollup_day", "usage_rollup_tag_day") if t in q.sql), "raw")


def test_rollups_answer_exactly_like_raw(store: Any) -> None:
    writer, fast, raw, roller = store
    events = make_events(3000)
    writer.insert_events(events[:2000])
    writer.insert_events(events[1500:])  # 500 redelivered in another block, before the rebuild
    assert used(fast, "team", timedelta(days=7)) == "raw"  # nothing rolled yet: raw answers
    same_answers(fast, raw)
    assert roller.roll_due() >= 9  # every day with a closed hour (the open one is today)
    assert used(fast, "team", timedelta(days=7)) == "usage_rollup_hour"
    assert used(fast, "key", timedelta(days=7)) == "usage_rollup_day"
    assert used(fast, "tag:task", timedelta(days=30)) == "usage_rollup_tag_day"
    assert used(fast, "node", timedelta(days=7)) == "raw"  # no rollup keeps the node
    hourly = fast.rollups.series(parse_dimension("tag:task"), fast.window(timedelta(days=7)), 3600, ["T-1"])
    assert "usage_rollup_hour" in hourly.sql and "ARRAY JOIN [(" in hourly.sql  # totals rolled, top values raw
    same_answers(fast, raw)
    for by, key, since in (("team", "team_id", timedelta(days=7)), ("tag:task", "tag:task", timedelta(days=30)),
                           ("key", "key_id", timedelta(hours=30))):  # fmt: skip
        got = fast.spend(parse_group_by(by), since, limit=10_000)
        assert {r.group[0]: (r.requests, r.cost_usd) for r in got.rows} == truth(events, key, since), by
    assert "" in {r.group[0] for r in fast.spend(parse_group_by("tag:task"), timedelta(days=30)).rows}
    assert roller.roll_due() == 0  # nothing changed: nothing to rebuild


def test_redelivery_and_late_events_after_rollup(store: Any) -> None:
    writer, fast, raw, roller = store
    events = make_events(1500, seed=3)
    writer.insert_events(events)
    roller.roll_due()
    before = truth(events, "team_id", timedelta(days=7))
    # Redelivery of already-rolled events (another block, so not dropped at insert): still counted once.
    writer.insert_events(events[::2][::-1])
    assert {r.group[0]: (r.requests, r.cost_usd) for r in fast.spend(parse_group_by("team"), timedelta(days=7)).rows} \
        == before  # fmt: skip
    same_answers(fast, raw)
    # A late event for a day rolled long ago: counted at once (its hour is read raw until the rebuild).
    late_t = NOW_US // DAY_US * DAY_US - 4 * DAY_US + 7 * HOUR_US + 11
    late = event(random.Random(99), late_t, 1)
    late.team_id, late.cost_usd = "late-team", "12.5"
    day = late_t // 10**6 // 86_400 * 86_400
    writer.insert_events([late])
    got = {r.group[0]: (r.requests, r.cost_usd) for r in fast.spend(parse_group_by("team"), timedelta(days=7)).rows}
    assert got == {**before, "late-team": (1, Decimal("12.5"))}
    assert day in roller.due(roller.server_now_us())
    same_answers(fast, raw)
    assert roller.roll_due() >= 1
    assert used(fast, "team", timedelta(days=7)) == "usage_rollup_hour"
    got = {r.group[0]: (r.requests, r.cost_usd) for r in fast.spend(parse_group_by("team"), timedelta(days=7)).rows}
    assert got == {**before, "late-team": (1, Decimal("12.5"))}
    n = writer.client.query(f"SELECT sum(requests) FROM {fast.database}.usage_rollup_hour WHERE team_id = 'late-team'")
    assert n.result_rows[0][0] == 1  # the rebuild read the deduplicated rows
    same_answers(fast, raw)


def test_rebuild_is_idempotent_and_skips_open_hours(store: Any) -> None:
    writer, fast, _, roller = store
    writer.insert_events(make_events(400, seed=5))
    today = NOW_US // DAY_US * 86_400
    first = roller.roll_day(today - 86_400)
    assert first is not None and first.covered_until_s == today  # a past day is covered whole

    def rows() -> list[Any]:
        return writer.client.query(f"SELECT bucket, team_id, model, requests, cost FROM {fast.database}."
                                   "usage_rollup_hour ORDER BY ALL").result_rows  # fmt: skip

    once = rows()
    roller.roll_day(today - 86_400)
    assert rows() == once and once  # the same rows again, not doubled
    now = roller.server_now_us() // 10**6
    state = roller.roll_day(now - now % 86_400)
    assert state is None or state.covered_until_s <= now - now % 3600  # never the open hour
    with pytest.raises(ValueError):
        roller.roll_day(today + 5)


def test_store_without_rollup_tables_answers_from_raw(store: Any) -> None:
    writer, fast, raw, _ = store
    writer.insert_events(make_events(200, seed=9))
    for t in ("usage_rollup_hour", "usage_rollup_day", "usage_rollup_tag_day", "usage_rollup_marks"):
        writer.client.command(f"DROP TABLE {fast.database}.{t}")
    assert used(fast, "team", timedelta(days=7)) == "raw"
    assert spend_map(fast, "team", timedelta(days=7)) == spend_map(raw, "team", timedelta(days=7))


async def test_ingest_rollup_loop_keeps_rollups_current(store: Any) -> None:
    """The loop `interlock ingest` runs (INTERLOCK_INGEST_ROLLUP_INTERVAL_S): rolls what is due, then a late event."""
    import asyncio

    from ingest.rollup import RollupLoop
    from interlock_contracts.settings.common import SettingsError
    from interlock_contracts.settings.ingest import IngestSettings

    writer, fast, raw, roller = store
    writer.insert_events(make_events(300, seed=11))
    stop = asyncio.Event()
    loop = RollupLoop(roller, interval_s=0.05)
    task = asyncio.create_task(loop.run(stop))
    for _ in range(600):
        if loop.runs >= 1:
            break
        await asyncio.sleep(0.05)
    assert used(fast, "team", timedelta(days=7)) == "usage_rollup_hour"
    late = event(random.Random(5), NOW_US - 5 * DAY_US, 2)
    writer.insert_events([late])
    runs = loop.runs
    for _ in range(600):
        if loop.runs >= runs + 2:
            break
        await asyncio.sleep(0.05)
    stop.set()
    await task
    assert roller.due(roller.server_now_us()) == []
    same_answers(fast, raw)
    assert IngestSettings.from_env({"INTERLOCK_CLICKHOUSE_DSN": "chdb:///x"}).rollup_interval_s == 30.0
    with pytest.raises(SettingsError, match="ROLLUP_INTERVAL_S"):
        IngestSettings.from_env({"INTERLOCK_CLICKHOUSE_DSN": "chdb:///x", "INTERLOCK_INGEST_ROLLUP_INTERVAL_S": "-1"})
