"""Dialects by name. Adding a dialect is one module plus one line here.

Order matters in two places only: the first dialect answers requests no dialect claims (a 404, a listing
without any API's marks), and the others are asked in order whether they claim one (Dialect.claims).
"""

from __future__ import annotations

from collections.abc import Mapping

from .anthropic import AnthropicDialect
from .base import Dialect
from .gemini import GeminiDialect
from .openai import OpenAIDialect
from .openai_responses import OpenAIResponsesDialect


def default_dialects() -> dict[str, Dialect]:
    ds: list[Dialect] = [OpenAIDialect(), GeminiDialect(), AnthropicDialect(), OpenAIResponsesDialect()]
    return {d.name: d for d in ds}


def by_family(dialects: Mapping[str, Dialect]) -> dict[str, Dialect]:
    """The dialect that reads a provider of each family (usage, stream scanning): the family's first one."""
    out: dict[str, Dialect] = {}
    for d in dialects.values():
        out.setdefault(d.family, d)
    return out
