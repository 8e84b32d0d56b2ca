"""ingest.gc_policy: GC thresholds raised while the ingest loop runs, and put back afterwards."""

from __future__ import annotations

import gc

from ingest.gc_policy import GEN0_THRESHOLD, tuned_gc


def test_tuned_gc_raises_thresholds_freezes_and_restores() -> None:
    earlier = gc.get_freeze_count()  # an in-process data plane of an earlier test may have frozen the heap
    gc.unfreeze()
    try:
        before = gc.get_threshold()
        with tuned_gc():
            assert gc.get_threshold()[0] == GEN0_THRESHOLD
            assert gc.get_freeze_count() > 0  # what existed at start is no longer re-scanned
        assert gc.get_threshold() == before and gc.get_freeze_count() == 0
        with tuned_gc(enabled=False):
            assert gc.get_threshold() == before
    finally:
        if earlier:
            gc.freeze()


def test_an_earlier_freeze_is_left_alone() -> None:
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with tuned_gc():
            pass
        assert gc.get_freeze_count() >= frozen
    finally:
        gc.unfreeze()
