"""Exact cost arithmetic in integer pico-USD (1e-12 USD), so costs sum without float drift."""

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
    input_pico: int
    output_pico: int
    cached_pico: int
    version: str

    def cost_pico(self, u: Usage) -> int:
        cached = min(u.cached_input_tokens, u.input_tokens)
        return (u.input_tokens - cached) * self.input_pico + cached * self.cached_pico + u.output_tokens * self.output_pico


def format_usd(pico: int) -> str:
    whole, frac = divmod(pico, 10**12)
    return f"{whole}.{frac:012d}"
