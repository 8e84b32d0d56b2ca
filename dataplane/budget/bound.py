"""Bound the output the provider may produce to what the budget reserved (provider overrun).

A request without an output limit is reserved at the model's max_output_tokens (or the policy default); the
provider, unbounded, could answer with more and overshoot the budget. When a budget applies and the client set
no limit, the request is given one equal to the reserved output, in the client's dialect (translation to the
provider's API carries it over). A client's own lower limit is kept. Dialects without a field here (and
providers ignoring it) are not bounded: their excess is charged as overshoot at settle, which the node's next
admission sees at once (pool.spent) and the ledger at the next Sync.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _top(field: str) -> Callable[[dict[str, Any], int], None]:
    def put(body: dict[str, Any], limit: int) -> None:
        body[field] = limit
    return put


def _gemini(body: dict[str, Any], limit: int) -> None:
    config = body.get("generationConfig")
    if not isinstance(config, dict):
        config = body["generationConfig"] = {}
    config["maxOutputTokens"] = limit


# endpoint operation (the client's API) -> setter of the output limit (only called when the client set none)
SETTERS: dict[str, Callable[[dict[str, Any], int], None]] = {
    "chat": _top("max_completion_tokens"),  # chat completions; the successor of max_tokens, accepted by all models
    "messages": _top("max_tokens"),  # Anthropic requires it anyway
    "responses": _top("max_output_tokens"),
    "generate": _gemini,
}


def bound_output(operation: str, body: dict[str, Any], client_limit: int | None, reserved_tokens: int) -> bool:
    """Set the output limit to `reserved_tokens` when the client set none; True if the body was changed."""
    if client_limit is not None or reserved_tokens <= 0:
        return False
    setter = SETTERS.get(operation)
    if setter is None:
        return False
    setter(body, reserved_tokens)
    return True
