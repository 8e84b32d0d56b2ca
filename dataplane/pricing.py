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

    def _rate(self, v: int, base: int) -> int:
        return base if v < 0 else v

    def cost_pico(self, u: Usage) -> int:
        if self.above is not None and self.above_input_tokens and u.input_tokens > self.above_input_tokens:
            return self.above.cost_pico(u)
        # counts are never negative (dialects/usage_fields.count); classes beyond the total are clamped to it
        total_in = max(u.input_tokens, 0)
        read = min(max(u.cached_input_tokens, 0), total_in)
        w5 = min(max(u.cache_write_5m_tokens, 0), total_in - read)
        w1 = min(max(u.cache_write_1h_tokens, 0), total_in - read - w5)
        audio_in = min(max(u.audio_input_tokens, 0), total_in - read - w5 - w1)
        plain_in = total_in - read - w5 - w1 - audio_in
        total_out = max(u.output_tokens, 0)
        audio_out = min(max(u.audio_output_tokens, 0), total_out)
        inp, out = self.input_pico, self.output_pico
        return (plain_in * inp + read * self.cached_pico + w5 * self._rate(self.write_5m_pico, inp)
                + w1 * self._rate(self.write_1h_pico, inp) + audio_in * self._rate(self.audio_in_pico, inp)
                + (total_out - audio_out) * out + audio_out * self._rate(self.audio_out_pico, out))

    @property
    def dearest_input_pico(self) -> int:
        """The most one input token of any class can cost (budget reservations)."""
        inp = self.input_pico
        own = max(inp, self.cached_pico, self._rate(self.write_5m_pico, inp), self._rate(self.write_1h_pico, inp),
                  self._rate(self.audio_in_pico, inp))
        return max(own, self.above.dearest_input_pico) if self.above is not None else own

    @property
    def dearest_output_pico(self) -> int:
        own = max(self.output_pico, self._rate(self.audio_out_pico, self.output_pico))
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
