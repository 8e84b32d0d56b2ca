"""Provider kinds: one module per provider family, each contributing adapters to one registry."""

from __future__ import annotations

import time
from collections.abc import Callable

from . import anthropic, azure, bedrock, gemini, openai_compat, vertex
from .base import ProviderAdapter


def default_providers(clock: Callable[[], float] = time.time) -> dict[str, ProviderAdapter]:
    adapters = [
        *openai_compat.adapters(), *anthropic.adapters(), *azure.adapters(), *gemini.adapters(),
        *vertex.adapters(), *bedrock.adapters(clock),
    ]
    return {a.kind: a for a in adapters}
