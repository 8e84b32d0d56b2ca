"""Who is calling and may they use this model — answered from the in-memory policy only."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import unquote_plus

from dataplane.dialects.client_errors import unauthorized
from dataplane.snapshot.policy import CompiledPolicy, KeyEntry
from interlock_contracts.keys import hash_key


def presented_key(headers: Mapping[str, str], query: str = "") -> str | None:
    """The virtual key from `Authorization: Bearer`, `x-api-key` or `x-goog-api-key` (the official SDKs' choices),
    else Gemini's `?key=` query parameter. The key is never forwarded: upstream URLs are built from scratch."""
    auth = headers.get("authorization")
    if auth is not None:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token:
            return token.strip()
    found = headers.get("x-api-key") or headers.get("x-goog-api-key")
    if found or "key=" not in query:
        return found or None
    for pair in query.split("&"):
        name, _, value = pair.partition("=")
        if name == "key" and value:
            return unquote_plus(value)
    return None


def authenticate(policy: CompiledPolicy, pepper: bytes, secret: str | None, now_ms: int) -> KeyEntry:
    if not secret:
        raise unauthorized("missing virtual key: send it as 'Authorization: Bearer <key>' or 'x-api-key: <key>'")
    entry = policy.keys.get(hash_key(pepper, secret))
    if entry is None:
        raise unauthorized("invalid virtual key; ask your platform team for a key (interlock keys create)")
    if entry.revoked:
        raise unauthorized(f"virtual key {entry.id} has been revoked")
    if entry.expires_at_ms and now_ms >= entry.expires_at_ms:
        raise unauthorized(f"virtual key {entry.id} has expired")
    return entry

