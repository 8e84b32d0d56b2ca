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
    """The strings of a body, joined by SEP, and where each one came from (container, key)."""

    __slots__ = ("_prefix", "_slots", "_starts", "digests", "parts", "text")

    def __init__(self, body: Any) -> None:
        slots: list[tuple[Any, Any, str]] = []
        _collect(body, slots)
        self._slots = slots
        starts, prefix, parts, pos = [], [], [], 0
        for _, k, s in slots:
            label = f"{k}=" if isinstance(k, str) and k not in _TEXT_KEYS else ""
            starts.append(pos)
            prefix.append(len(label))
            parts.append(label + s if label else s)
            pos += len(label) + len(s) + len(SEP)
        self._starts = starts
        self._prefix = prefix
        self.parts = parts  # each string as scanned (`name=` + value for a named value); text = SEP.join(parts)
        self.text = SEP.join(parts)
        self.digests: list[int | bytes | None] | None = None  # filled by scancache.digests, once per body

    @property
    def starts(self) -> list[int]:
        """Where each part starts in `text`."""
        return self._starts

    def apply(self, findings: list[Finding]) -> int:
        """Redact the findings in place in the body; returns how many strings changed."""
        per: dict[int, list[Finding]] = {}
        for f in findings:
            i = bisect_right(self._starts, f.start) - 1
            base = self._starts[i] + self._prefix[i]
            end = min(f.end - base, len(self._slots[i][2]))
            if end > 0:
                per.setdefault(i, []).append(Finding(f.rule, max(f.start - base, 0), end))
        for i, fs in per.items():
            container, key, s = self._slots[i]
            container[key] = redact(s, fs)
        return len(per)


def _collect(v: Any, out: list[tuple[Any, Any, str]]) -> None:
    if isinstance(v, dict):
        for k, x in v.items():
            if isinstance(x, str):
                if k not in _SKIP_KEYS and x and not x.startswith("data:"):
                    out.append((v, k, x))
            elif isinstance(x, (dict, list)):
                _collect(x, out)
    elif isinstance(v, list):
        for i, x in enumerate(v):
            if isinstance(x, str):
                if x:
                    out.append((v, i, x))
            elif isinstance(x, (dict, list)):
                _collect(x, out)
