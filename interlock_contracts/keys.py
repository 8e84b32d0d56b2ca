"""Virtual-key format and keyed hashing, shared by control and data plane.

A virtual key is `sk-il-` + 43 url-safe characters (256 random bits). Only
HMAC-SHA256(pepper, key) is ever stored or shipped; the pepper is a deployment
secret configured on both planes, so a leaked store or snapshot cannot be
used to check guesses offline.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

KEY_PREFIX = "sk-il-"
KEY_ID_PREFIX = "vk_"
HASH_SCHEME = "hmac-sha256"


def new_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def new_key_id() -> str:
    return KEY_ID_PREFIX + secrets.token_hex(8)


def hash_key(pepper: bytes, secret: str | bytes) -> bytes:
    raw = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(pepper, raw, hashlib.sha256).digest()


def display_hint(secret: str) -> str:
    """A non-secret hint for listings: prefix and last 4 characters."""
    return f"{KEY_PREFIX}…{secret[-4:]}"
