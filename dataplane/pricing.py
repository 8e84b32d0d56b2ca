"""Exact cost arithmetic in integer pico-USD (1e-12 USD), so costs sum without float drift.

Every token class has its own per-token price (docs/cost.md): plain input, cache reads, cache writes
per TTL, audio in and out, plain output (reasoning is output). A long-context tier reprices the
whole request when its input passes a threshold, as Anthropic and Google bill it.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal

from dataplane.dialects.base import Usage

PICO_PER_USD_PER_MTOK = 10**6  # 1 USD per 1M tokens = 1e-6 USD/token = 1e6 pico-USD/token


def per_token_pico(price_per_mtok: str) -> int:
    # Prices finer than 1e-6 USD per 1M tokens round up: never under-bill.
    if not price_per_mtok:
        return 0
    return int((Decimal(price_per_mtok) * PICO_PER_USD_PER_MTOK).to_integral_value(rounding=ROUND_CEILING))


@dataclass(frozen=True, slots=True)
class Price:
    """Per-token prices in pico-USD. A class priced -1 costs what its base class costs (cache writes:
    input; audio: input/output), so a policy naming only input/output prices stays as before."""

    input_pico: int
    output_pico: int
    cached_pico: int
    version: str
    write_5m_pico: int = -1
    write_1h_pico: int = -1
    audio_in_pico: int = -1
    audio_out_pico: int = -1
    above_input_tokens: int = 0  # > 0 with `above`: a request with more input is priced wholly at `above`
    above: Price | None = None

    def __post_init__(self) -> None:
        # resolve the fallbacks once (frozen: set through object), so cost_pico is plain arithmetic
        for name, base in (("write_5m_pico", self.input_pico), ("write_1h_pico", self.input_pico),
                           ("audio_in_pico", self.input_pico), ("audio_out_pico", self.output_pico)):
            if getattr(self, name) < 0:
                object.__setattr__(self, name, base)

    def cost_pico(self, u: Usage) -> int:
        total_in = u.input_tokens
        if self.above is not None and total_in > self.above_input_tokens > 0:
            return self.above.cost_pico(u)
        # counts are never negative (dialects/usage_fields.count); classes are clamped into the total anyway
        total_in = total_in if total_in > 0 else 0
        total_out = u.output_tokens if u.output_tokens > 0 else 0
        read, w5, w1, audio_in = u.cached_input_tokens, u.cache_write_5m_tokens, u.cache_write_1h_tokens, \
            u.audio_input_tokens
        audio_out = u.audio_output_tokens
        if not (w5 or w1 or audio_in or audio_out):  # the common case: only cache reads are split out
            read = read if 0 < read < total_in else (total_in if read > 0 else 0)
            return (total_in - read) * self.input_pico + read * self.cached_pico + total_out * self.output_pico
        left = total_in
        read = read if 0 < read < left else (left if read > 0 else 0)
        left -= read
        w5 = w5 if 0 < w5 < left else (left if w5 > 0 else 0)
        left -= w5
        w1 = w1 if 0 < w1 < left else (left if w1 > 0 else 0)
        left -= w1
        audio_in = audio_in if 0 < audio_in < left else (left if audio_in > 0 else 0)
        left -= audio_in
        audio_out = audio_out if 0 < audio_out < total_out else (total_out if audio_out > 0 else 0)
        return (left * self.input_pico + read * self.cached_pico + w5 * self.write_5m_pico + w1 * self.write_1h_pico
                + audio_in * self.audio_in_pico + (total_out - audio_out) * self.output_pico
                + audio_out * self.audio_out_pico)

    @property
    def dearest_input_pico(self) -> int:
        """The most one input token of any class can cost (budget reservations)."""
        own = max(self.input_pico, self.cached_pico, self.write_5m_pico, self.write_1h_pico, self.audio_in_pico)
        return max(own, self.above.dearest_input_pico) if self.above is not None else own

    @property
    def dearest_output_pico(self) -> int:
        own = max(self.output_pico, self.audio_out_pico)
        return max(own, self.above.dearest_output_pico) if self.above is not None else own


def price_from_proto(p: object) -> Price:
    """A snapshot's policy_pb2.Price -> Price (typed loosely: dataplane.pricing does not import protobuf)."""
    inp = per_token_pico(getattr(p, "input_per_mtok", ""))
    opt = lambda name: per_token_pico(v) if (v := getattr(p, name, "")) else -1  # noqa: E731
    above = getattr(p, "above", None)
    has_above = bool(getattr(p, "above_input_tokens", 0)) and above is not None
    return Price(
        input_pico=inp, output_pico=per_token_pico(getattr(p, "output_per_mtok", "")),
        cached_pico=per_token_pico(getattr(p, "cached_input_per_mtok", "") or getattr(p, "input_per_mtok", "")),
        version=getattr(p, "version", ""), write_5m_pico=opt("cache_write_per_mtok"),
        write_1h_pico=opt("cache_write_1h_per_mtok"), audio_in_pico=opt("audio_input_per_mtok"),
        audio_out_pico=opt("audio_output_per_mtok"),
        above_input_tokens=int(getattr(p, "above_input_tokens", 0)) if has_above else 0,
        above=price_from_proto(above) if has_above else None,
    )


def format_usd(pico: int) -> str:
    whole, frac = divmod(max(pico, 0), 10**12)
    return f"{whole}.{frac:012d}"
