"""What a served path is: its dialect, the provider adapter's operation and the path (below the request
context, which carries one, and the attempt that forwards it)."""

from __future__ import annotations

from dataclasses import dataclass

from dataplane.dialects.base import Dialect


@dataclass(frozen=True, slots=True)
class Endpoint:
    dialect: Dialect
    operation: str  # provider adapter path key: "chat", "messages"
    path: str
