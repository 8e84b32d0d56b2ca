"""Per-request cost accounting on the data plane: usage parsing + pricing, with and without the token
classes billed apart (issue 14), against a baseline of the plain three-class formula in the same run.

    python benchmarks/cost_accounting.py            # ~10 s
    python benchmarks/cost_accounting.py --quick    # ~2 s

Prints ns per call (best of 5 repeats) and the ratio to the baseline. Each figure is paid once per
request, when it ends (the usage event), not per streamed chunk.
"""

from __future__ import annotations

import argparse
import timeit
from collections.abc import Callable
from typing import Any

from dataplane.dialects.anthropic import AnthropicDialect
from dataplane.dialects.base import Usage
from dataplane.dialects.openai import OpenAIDialect
from dataplane.pricing import Price

ANTHROPIC = {"usage": {"input_tokens": 2000, "cache_creation_input_tokens": 14000, "cache_read_input_tokens": 50000,
                       "cache_creation": {"ephemeral_5m_input_tokens": 10000, "ephemeral_1h_input_tokens": 4000},
                       "output_tokens": 800}}
OPENAI = {"usage": {"prompt_tokens": 10000, "completion_tokens": 500, "prompt_tokens_details": {"cached_tokens": 8000},
                    "completion_tokens_details": {"reasoning_tokens": 100}}}


def baseline_parse(body: dict[str, Any]) -> Usage:
    """The old way: bare int() of three fields, no token classes, no guard against hostile values."""
    u = body["usage"]
    read = int(u.get("cache_read_input_tokens") or 0)
    return Usage(int(u.get("input_tokens") or 0) + read + int(u.get("cache_creation_input_tokens") or 0),
                 int(u.get("output_tokens") or 0), read, reported=True)


def baseline_cost(u: Usage, inp: int = 3_000_000, out: int = 15_000_000, cached: int = 300_000) -> int:
    c = min(u.cached_input_tokens, u.input_tokens)
    return (u.input_tokens - c) * inp + c * cached + u.output_tokens * out


def ns(f: Callable[[], object], n: int) -> float:
    return min(timeit.repeat(f, number=n, repeat=5)) / n * 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    n = 20_000 if ap.parse_args().quick else 200_000
    sonnet = Price(3_000_000, 15_000_000, 300_000, "v", 3_750_000, 6_000_000, above_input_tokens=200_000,
                   above=Price(6_000_000, 22_500_000, 600_000, "v", 7_500_000, 12_000_000))
    classes = AnthropicDialect().usage_from_body(ANTHROPIC)
    reads_only = Usage(10_000, 500, 8_000)
    rows = [
        ("parse Anthropic usage (5 classes)", ns(lambda: AnthropicDialect().usage_from_body(ANTHROPIC), n),
         ns(lambda: baseline_parse(ANTHROPIC), n)),
        ("parse OpenAI usage", ns(lambda: OpenAIDialect().usage_from_body(OPENAI), n),
         ns(lambda: baseline_parse({"usage": {"input_tokens": 10000, "output_tokens": 500}}), n)),
        ("cost, cache writes + tier check", ns(lambda: sonnet.cost_pico(classes), n),
         ns(lambda: baseline_cost(classes), n)),
        ("cost, reads only (common case)", ns(lambda: sonnet.cost_pico(reads_only), n),
         ns(lambda: baseline_cost(reads_only), n)),
    ]
    print(f"{'':36} {'new ns':>8} {'baseline ns':>12} {'ratio':>6}")
    for name, new, base in rows:
        print(f"{name:36} {new:8.0f} {base:12.0f} {new / base:6.2f}")


if __name__ == "__main__":
    main()
