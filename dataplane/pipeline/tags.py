"""Attribution tags for a request: pure functions over headers and the parsed body.

Precedence, lowest first: body metadata the SDKs already send (OpenAI/Anthropic
`metadata`, Gemini `labels`), the `x-interlock-tags` header; team and key default
tags (precomputed in the policy) are authoritative over both: a client may add
tags but not change a default one, unless the team lists it in `overridable_tags`
(otherwise a tag budget such as env=prod could be escaped by sending env=dev).
A header that tries is refused (400); body metadata that tries is ignored (it is
the SDK's, not sent for us). Coding agents' session ids are captured
automatically as the `session` tag.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

from dataplane.dialects.client_errors import bad_request

TAGS_HEADER = "x-interlock-tags"
MAX_TAGS = 32
MAX_VALUE = 256
_KEY = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_LEGACY_SESSION = re.compile(r"_session_([0-9A-Za-z-]{8,64})$")
# Claude Code (v2.1.86+) and Codex CLI send a session header (Codex 0.169 `session-id`, older
# `session_id`); older Claude Code only the body metadata.
_SESSION_HEADERS = ("x-claude-code-session-id", "session-id", "session_id", "x-session-id", "conversation_id")


# Control characters in a value would reach terminals (escape sequences) and CSV exports.
_BAD_VALUE = re.compile(r"[\x00-\x1f\x7f]")


def valid_value(value: str) -> bool:
    return len(value) <= MAX_VALUE and not _BAD_VALUE.search(value)


def _check(key: str, value: str, source: str) -> None:
    if not _KEY.match(key):
        raise bad_request(f"{source}: tag name {key[:70]!r} must be 1-64 characters of letters, digits, _ . : -")
    if len(value) > MAX_VALUE:
        raise bad_request(f"{source}: the value of tag {key!r} is longer than {MAX_VALUE} characters")
    if _BAD_VALUE.search(value):
        raise bad_request(f"{source}: the value of tag {key!r} contains control characters")


def parse_header(raw: str) -> dict[str, str]:
    """`agent=claude-code,task=T-123,step=edit` -> dict; a malformed header is the client's error (400)."""
    tags: dict[str, str] = {}
    for part in raw.split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep:
            raise bad_request(f"{TAGS_HEADER}: expected name=value pairs separated by commas, got {part[:70]!r}")
        key, value = key.strip(), value.strip()
        _check(key, value, TAGS_HEADER)
        tags[key] = value
    if len(tags) > MAX_TAGS:
        raise bad_request(f"{TAGS_HEADER}: at most {MAX_TAGS} tags per request")
    return tags


def _claude_session(user_id: str) -> str | None:
    if user_id.startswith("{"):
        try:
            data = orjson.loads(user_id)
        except orjson.JSONDecodeError:
            return None
        sid = data.get("session_id") if isinstance(data, dict) else None
        return sid if isinstance(sid, str) and sid else None
    m = _LEGACY_SESSION.search(user_id)
    return m.group(1) if m else None


def _meta_tags(meta: Mapping[str, Any], tags: dict[str, str]) -> None:
    for key, value in meta.items():
        if key == "user_id" and isinstance(value, str):
            if (session := _claude_session(value)) and valid_value(session):
                tags["session"] = session
        elif isinstance(value, str) and _KEY.match(key) and valid_value(value) and len(tags) < MAX_TAGS:
            tags[key] = value  # metadata is the SDK's, not ours: skip what doesn't fit rather than refuse


def from_body(body: Mapping[str, Any]) -> dict[str, str]:
    """Tags from body metadata: OpenAI `metadata` string entries; Anthropic `metadata.user_id` (its session);
    Gemini (Vertex) `labels`."""
    tags: dict[str, str] = {}
    if isinstance(meta := body.get("metadata"), dict):
        _meta_tags(meta, tags)
    if isinstance(labels := body.get("labels"), dict):
        _meta_tags(labels, tags)
    return tags


_NONE: Mapping[str, str] = {}


def request_tags(
    defaults: Mapping[str, str], headers: Mapping[str, str], body: Mapping[str, Any], locked: Mapping[str, str] = _NONE,
) -> dict[str, str]:
    """`locked`: the default tags a client may not change, with their values (KeyEntry.locked_tags)."""
    tags = from_body(body)
    for name in _SESSION_HEADERS:
        if (session := headers.get(name)) and valid_value(session):
            tags["session"] = session
            break
    raw = headers.get(TAGS_HEADER)
    if raw:
        sent = parse_header(raw)
        if locked:
            for key in locked.keys() & sent.keys():
                if sent[key] != locked[key]:
                    raise bad_request(f"{TAGS_HEADER}: tag {key!r} is set by policy to {locked[key]!r} for this key; "
                                      f"it cannot be overridden (a team admin can list it in overridable_tags)")
        tags.update(sent)
    return {**defaults, **tags, **locked}  # policy-set tags last: authoritative


def missing(required: frozenset[str], tags: Mapping[str, str]) -> list[str]:
    return sorted(t for t in required if not tags.get(t))
