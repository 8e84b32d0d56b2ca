"""A small Prometheus text-format (0.0.4) writer: counters, gauges and histograms keyed by label tuples.

Hand-rolled rather than prometheus_client because recording sits on the data plane's request path:
`inc`/`observe` here are a dict lookup and an add on the event loop's thread (no lock, no child-object
lookup through .labels()); benchmarks/metrics_record.py measures both. Rendering happens per scrape.
Label values must come from bounded sets (policy names, status classes), never key ids or tags.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence

Labels = tuple[str, ...]


def escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _num(v: float) -> str:
    if v == math.inf:
        return "+Inf"
    if isinstance(v, int) or v.is_integer():
        return str(int(v))
    return repr(v)


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


class Metric:
    kind = "untyped"

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help_text
        self.labelnames = tuple(labelnames)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]

    def samples(self) -> Iterable[str]:
        return ()

    def render(self) -> list[str]:
        return [*self.header(), *self.samples()]


Collect = Callable[[], Iterable[tuple[Labels, float]]]


class Counter(Metric):
    """Exposed as <name>_total; `name` is given without the suffix. `collect` reads a count kept elsewhere
    (e.g. the usage sink's) at scrape time."""

    kind = "counter"

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str] = (), collect: Collect | None = None) -> None:
        super().__init__(name, help_text, labelnames)
        self.values: dict[Labels, list[float]] = {}
        self._collect = collect

    def header(self) -> list[str]:
        return [f"# HELP {self.name}_total {self.help}", f"# TYPE {self.name}_total counter"]

    def inc(self, labels: Labels = (), v: float = 1) -> None:
        row = self.values.get(labels)
        if row is None:
            row = self.values[labels] = [0]
        row[0] += v

    def row(self, labels: Labels) -> list[float]:
        """The mutable cell of one series: hot paths keep it and add to row[0] without a lookup."""
        row = self.values.get(labels)
        if row is None:
            row = self.values[labels] = [0]
        return row

    def samples(self) -> Iterable[str]:
        items = sorted(self._collect()) if self._collect is not None else sorted(
            (k, r[0]) for k, r in self.values.items())
        for lv, v in items:
            yield f"{self.name}_total{_labels(self.labelnames, lv)} {_num(v)}"


class Gauge(Metric):
    kind = "gauge"

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str] = (), collect: Collect | None = None) -> None:
        super().__init__(name, help_text, labelnames)
        self.values: dict[Labels, float] = {}
        self._collect = collect  # read at scrape time (queue depths, states) instead of on every change

    def set(self, labels: Labels, v: float) -> None:
        self.values[labels] = v

    def samples(self) -> Iterable[str]:
        items = sorted(self._collect()) if self._collect is not None else sorted(self.values.items())
        for lv, v in items:
            yield f"{self.name}{_labels(self.labelnames, lv)} {_num(v)}"


class Histogram(Metric):
    kind = "histogram"

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str], buckets: Sequence[float]) -> None:
        super().__init__(name, help_text, labelnames)
        self.bounds = tuple(sorted(buckets))
        self._les = [_num(b) for b in self.bounds] + ["+Inf"]
        # per label tuple: [count per bucket (not cumulative; last = above every bound)..., sum]
        self.values: dict[Labels, list[float]] = {}

    def observe(self, labels: Labels, v: float) -> None:
        row = self.row(labels)
        row[bisect_left(self.bounds, v)] += 1
        row[-1] += v

    def row(self, labels: Labels) -> list[float]:
        """The mutable counts of one series; observe into it with `observe_row(h.bounds, row, v)`."""
        row = self.values.get(labels)
        if row is None:
            row = self.values[labels] = [0] * (len(self.bounds) + 2)
        return row

    def samples(self) -> Iterable[str]:
        for lv, row in sorted(self.values.items()):
            acc = 0.0
            for le, n in zip(self._les, row, strict=False):
                acc += n
                le_label = 'le="' + le + '"'
                yield f"{self.name}_bucket{_labels(self.labelnames, lv, le_label)} {_num(acc)}"
            yield f"{self.name}_sum{_labels(self.labelnames, lv)} {_num(row[-1])}"
            yield f"{self.name}_count{_labels(self.labelnames, lv)} {_num(acc)}"


def observe_row(bounds: tuple[float, ...], row: list[float], v: float) -> None:
    row[bisect_left(bounds, v)] += 1
    row[-1] += v


class Registry:
    """The metrics of one process, plus raw text sections (e.g. the budget series) rendered by callbacks."""

    def __init__(self) -> None:
        self._metrics: list[Metric] = []
        self._sections: list[Callable[[], bytes]] = []

    def add(self, *metrics: Metric) -> None:
        self._metrics.extend(metrics)

    def counter(self, name: str, help_text: str, labelnames: Sequence[str] = (), collect: Collect | None = None) -> Counter:
        c = Counter(name, help_text, labelnames, collect)
        self.add(c)
        return c

    def gauge(self, name: str, help_text: str, labelnames: Sequence[str] = (), collect: Collect | None = None) -> Gauge:
        g = Gauge(name, help_text, labelnames, collect)
        self.add(g)
        return g

    def histogram(self, name: str, help_text: str, labelnames: Sequence[str], buckets: Sequence[float]) -> Histogram:
        h = Histogram(name, help_text, labelnames, buckets)
        self.add(h)
        return h

    def section(self, render: Callable[[], bytes]) -> None:
        self._sections.append(render)

    def render(self) -> bytes:
        lines: list[str] = []
        for m in self._metrics:
            lines += m.render()
        out = ("\n".join(lines) + "\n").encode() if lines else b""
        return out + b"".join(s() for s in self._sections)


CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# OpenTelemetry GenAI semantic-convention bucket advice (seconds; tokens).
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
