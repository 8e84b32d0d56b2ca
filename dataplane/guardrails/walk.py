"""Every piece of client or provider text in a JSON body, whatever the dialect, as one string to scan.

Dialect-neutral on purpose: system prompts, messages, tool results, tool-call arguments, document text, Gemini
parts, embeddings input and count_tokens bodies are all JSON strings. Only values that are not text are
skipped: base64 media and opaque signatures, by key.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Any

from dataplane.guardrails.engine import Finding, redact

# base64 media (Anthropic source.data, Gemini inlineData.data), reasoning signatures/encrypted state, ids
_SKIP_KEYS = frozenset({"data", "signature", "encrypted_content", "thought_signature", "thoughtSignature",
                        "model", "role", "type", "id", "tool_use_id", "tool_call_id", "call_id", "media_type",
                        "mimeType", "mime_type", "stop_reason", "finish_reason", "object"})
# No built-in rule matches across it (whitespace ends every value, the NUL ends `\s*` and the private key's
# body), so each string's findings are the same whatever its neighbours: what lets the scan cache per string.
SEP = "\n\x00\n"
# Keys that hold the text itself; any other key names its value (tool input {"aws_secret_access_key": "..."}),
# so it is scanned as `name=value` and context rules see the name.
_TEXT_KEYS = frozenset({"content", "text", "input", "output", "arguments", "instructions", "system", "prompt",
                        "partial_json", "thinking", "refusal", "delta", "query", "description"})


class TextIndex:
    """The strings of a body, joined by SEP, and where each one came from (container, key).

    Built on every request an input guardrail scans, so only what the scan needs is made up front (the parts
    and their joined text); where each part starts is computed when something asks (the cache, a redaction)."""

    __slots__ = ("_slots", "_starts", "digests", "parts", "text")

    def __init__(self, body: Any) -> None:
        slots: list[tuple[Any, Any, str]] = []
        parts: list[str] = []
        _collect(body, slots, parts)
        self._slots = slots
        self.parts = parts  # each string as scanned (`name=` + value for a named value); text = SEP.join(parts)
        self.text = SEP.join(parts)
        self._starts: list[int] | None = None
        self.digests: list[int | bytes | None] | None = None  # filled by scancache.digests, once per body

    @property
    def starts(self) -> list[int]:
        """Where each part starts in `text`."""
        if self._starts is None:
            starts, pos, gap = [], 0, len(SEP)
            for p in self.parts:
                starts.append(pos)
                pos += len(p) + gap
            self._starts = starts
        return self._starts

    def apply(self, findings: list[Finding]) -> int:
        """Redact the findings in place in the body; returns how many strings changed."""
        starts, parts, slots = self.starts, self.parts, self._slots
        per: dict[int, list[Finding]] = {}
        for f in findings:
            i = bisect_right(starts, f.start) - 1
            s = slots[i][2]
            base = starts[i] + len(parts[i]) - len(s)  # past the `name=` label, if any
            end = min(f.end - base, len(s))
            if end > 0:
                per.setdefault(i, []).append(Finding(f.rule, max(f.start - base, 0), end))
        for i, fs in per.items():
            container, key, s = slots[i]
            container[key] = redact(s, fs)
        return len(per)


def _collect(v: Any, out: list[tuple[Any, Any, str]], parts: list[str]) -> None:
    # exact type checks: the body comes from orjson (plain dict/list/str), and they are the cheapest test
    t = type(v)
    if t is dict:
        for k, x in v.items():
            tx = type(x)
            if tx is str:
                if x and k not in _SKIP_KEYS and not x.startswith("data:"):
                    out.append((v, k, x))
                    parts.append(x if k in _TEXT_KEYS else f"{k}={x}")
            elif tx is dict or tx is list:
                _collect(x, out, parts)
    elif t is list:
        for i, x in enumerate(v):
            tx = type(x)
            if tx is str:
                if x:
                    out.append((v, i, x))
                    parts.append(x)
            elif tx is dict or tx is list:
                _collect(x, out, parts)
