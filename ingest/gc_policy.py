"""Cyclic-GC settings while the ingest loop runs.

Measured (benchmarks/ingest_throughput.py under perf): with CPython's default
thresholds the cyclic GC took ~14% of the ingest process's CPU. Every batch
allocates tens of thousands of container objects (aiokafka ConsumerRecords,
lists) that live about a second - long enough to be promoted - so full
collections keep re-scanning every buffered record, while reference counting
frees all of them anyway. A high gen-0 threshold and freezing what exists at
start (modules, clients) make collections rare and cheap.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

GEN0_THRESHOLD = 100_000


@contextmanager
def tuned_gc(enabled: bool = True) -> Iterator[None]:
    """Raise the GC thresholds and freeze long-lived objects; restore both on exit."""
    if not enabled:
        yield
        return
    before, frozen_before = gc.get_threshold(), gc.get_freeze_count()
    gc.collect()
    gc.freeze()
    gc.set_threshold(GEN0_THRESHOLD, 20, 100)
    try:
        yield
    finally:
        gc.set_threshold(*before)
        if not frozen_before:  # someone else's freeze (a data plane in this process) stays
            gc.unfreeze()
