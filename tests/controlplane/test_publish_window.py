"""The publish window widens with the subscriber count (issue 16): fewer fan-out rounds at 100 nodes, bounded."""

from __future__ import annotations

from pathlib import Path

from controlplane.publisher import SnapshotPublisher
from controlplane.store import open_store


async def test_window_is_the_base_up_to_40_subscribers_then_grows_to_its_cap(tmp_path: Path) -> None:
    kv = open_store(f"sqlite:///{tmp_path}/policy.db", "/w")
    publisher = SnapshotPublisher(kv)
    try:
        subs = [publisher.subscribe() for _ in range(10)]
        assert publisher.batch_window_s() == 0.25
        subs += [publisher.subscribe() for _ in range(30)]  # 40 subscribers
        assert publisher.batch_window_s() == 0.25
        subs += [publisher.subscribe() for _ in range(24)]  # 64 subscribers
        assert publisher.batch_window_s() == 0.25 * 64 / 40
        subs += [publisher.subscribe() for _ in range(36)]  # 100 subscribers (issue 16's scale): capped
        assert publisher.batch_window_s() == 0.6
        subs += [publisher.subscribe() for _ in range(400)]  # 500: still capped
        assert publisher.batch_window_s() == 0.6
        for sub in subs:
            publisher.unsubscribe(sub)
        assert publisher.batch_window_s() == 0.25
        assert SnapshotPublisher(kv, batch_s=0.05).batch_window_s() == 0.05  # tests' short windows stay short
    finally:
        await kv.close()
