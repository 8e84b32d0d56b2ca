"""Output guardrails on the context's writer: whole answers, and streams redacted while they stream.

Streams: the client-dialect SSE is cut into events; each event's text fields (content, text, partial_json,
arguments, delta, thinking, refusal) in order form one running text. Events are held back only while their
text could still be part of a secret: the last few whitespace-separated tokens (a `KEY = value` assignment),
an unterminated PEM block, or a match that reaches the end of what has arrived, bounded by MAX_HOLD
characters. Held events are released as soon as that is settled, redacted if needed, re-encoded only if
changed. Events without text (message_start, role, usage, [DONE]) pass through as soon as nothing before them
is held, so the first byte is not delayed. `block` raises: the context ends the stream with the dialect's
terminal error event, and only what was delivered was written.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from dataplane.dialects.base import Usage
from dataplane.guardrails.compiled import OUTPUT, CompiledGuardrail
from dataplane.guardrails.engine import Finding
from dataplane.guardrails.refusal import blocked
from dataplane.guardrails.walk import TextIndex

if TYPE_CHECKING:
    from dataplane.pipeline.context import RequestContext
    from dataplane.usage.event import RequestRecord

MAX_HOLD = 8192  # characters of text held back at most (a 4096-bit PEM key is ~3.3 KB)
_TOKENS_HELD = 3  # "NAME", "=", "value": context rules need the name with the value
_TEXT_KEYS = frozenset({"content", "text", "partial_json", "arguments", "delta", "thinking", "refusal"})
_PEM_OPEN = "-----BEGIN"
_PEM_CLOSE = "-----END"


class _Event:
    __slots__ = ("data_line", "end", "obj", "raw", "slots", "start")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.obj: Any = None
        self.slots: list[tuple[Any, Any, str]] = []
        self.data_line = -1
        self.start = self.end = 0
        lines = raw.split(b"\n")
        for i, line in enumerate(lines):
            if line.startswith(b"data:"):
                try:
                    self.obj = orjson.loads(line[5:])
                except orjson.JSONDecodeError:
                    return
                self.data_line = i
                _text_slots(self.obj, self.slots)
                return

    def encode(self, changed: bool) -> bytes:
        if not changed:
            return self.raw + b"\n\n"
        lines = self.raw.split(b"\n")
        lines[self.data_line] = b"data: " + orjson.dumps(self.obj)
        return b"\n".join(lines) + b"\n\n"


def _text_slots(v: Any, out: list[tuple[Any, Any, str]]) -> None:
    if isinstance(v, dict):
        for k, x in v.items():
            if isinstance(x, str):
                if k in _TEXT_KEYS and x:
                    out.append((v, k, x))
            elif isinstance(x, (dict, list)):
                _text_slots(x, out)
    elif isinstance(v, list):
        for x in v:
            if isinstance(x, (dict, list)):
                _text_slots(x, out)


def _safe_cut(text: str, findings: list[Finding], final: bool) -> int:
    """How much of the held text can be released now."""
    if final:
        return len(text)
    cut = len(text)
    for _ in range(_TOKENS_HELD):
        j = max(text.rfind(" ", 0, cut), text.rfind("\n", 0, cut), text.rfind("\t", 0, cut))
        if j < 0:
            cut = 0
            break
        cut = j
    if (b := text.rfind(_PEM_OPEN)) >= 0 and text.find(_PEM_CLOSE, b) < 0:
        cut = min(cut, b)
    for f in findings:
        if f.start < cut < f.end or f.end >= len(text):
            cut = min(cut, f.start)
    return max(cut, len(text) - MAX_HOLD)


class OutputScanner(Protocol):
    """What the output guard asks of the guardrail stage (dataplane/pipeline/guardrail_stage.py's Guardrails is one, and
    builds the guard: so the guard declares this rather than import it)."""

    def scan_output(self, ctx: RequestContext, g: CompiledGuardrail, text: str) -> list[Finding]: ...

    def record(self, rec: RequestRecord, g: CompiledGuardrail, direction: int, action: str,
               rules: Counter[str], error: Exception | None = None) -> str: ...


class OutputGuard:
    """Implements dataplane.pipeline.context.OutputFilter for the guardrails that apply to one request."""

    def __init__(self, guardrails: OutputScanner, gs: list[CompiledGuardrail]) -> None:
        self._g = guardrails
        self._gs = gs
        self._buf = b""
        self._held: list[_Event] = []
        self._found: dict[str, Counter[str]] = {}
        self._actions: dict[str, str] = {}
        self.blocked = False
        self._delivered_text = 0  # events with text that reached the client: what a blocked stream is billed

    def bill(self, usage: Usage) -> Usage:
        """A stream ended by `block`: output billed as what was delivered (one token per text event at least as
        the proxy estimates elsewhere), never more than the provider reported."""
        out = min(usage.output_tokens, self._delivered_text) if usage.reported else self._delivered_text
        return replace(usage, output_tokens=out, reasoning_tokens=min(usage.reasoning_tokens, out), reported=False)

    # -- whole answers
    def body(self, ctx: RequestContext, status: int, payload: bytes) -> bytes:
        if status != 200:
            return payload
        try:
            obj = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return payload
        changed = False
        for g in self._gs:
            index = TextIndex(obj)
            findings = self._g.scan_output(ctx, g, index.text)
            if findings:
                rules = Counter(f.rule for f in findings)
                if self._settle(ctx, g, rules) == "redact":
                    index.apply(findings)
                    changed = True
        return orjson.dumps(obj) if changed else payload

    def _settle(self, ctx: RequestContext, g: CompiledGuardrail, rules: Counter[str]) -> str:
        action = self._g.record(ctx.rec, g, OUTPUT, g.action, rules)
        if action == "block":
            self.blocked = True
            raise blocked(g, rules, "model's answer")
        return action

    # -- streams
    def chunk(self, ctx: RequestContext, data: bytes) -> bytes:
        buf = self._buf + data
        if b"\r" in buf:
            buf = buf.replace(b"\r\n", b"\n")
        *complete, self._buf = buf.split(b"\n\n")
        if not complete:
            return b""
        for raw in complete:
            if raw:
                self._held.append(_Event(raw))
        return self._release(ctx, final=False)

    def flush(self, ctx: RequestContext) -> bytes:
        if self._buf.strip():
            self._held.append(_Event(self._buf))
        self._buf = b""
        out = self._release(ctx, final=True)
        for gid, rules in self._found.items():
            g = next(x for x in self._gs if x.id == gid)
            self._g.record(ctx.rec, g, OUTPUT, self._actions[gid], rules)
        self._found.clear()
        return out

    def _release(self, ctx: RequestContext, final: bool) -> bytes:
        held = self._held
        pos = 0
        parts = []
        for ev in held:
            ev.start = pos
            for _, _, s in ev.slots:
                parts.append(s)
                pos += len(s)
            ev.end = pos
        text = "".join(parts)
        if not text:
            self._held = []
            self._delivered_text += sum(1 for ev in held if ev.slots)
            return b"".join(ev.encode(False) for ev in held)
        per_guard = [(g, self._g.scan_output(ctx, g, text)) for g in self._gs]
        all_findings = [f for _, fs in per_guard for f in fs]
        cut = _safe_cut(text, all_findings, final)
        n = 0
        while n < len(held) and held[n].end <= cut:
            n += 1
        while n and any(f.start < held[n - 1].end < f.end for f in all_findings):
            n -= 1  # never release part of a finding: its placeholder goes where it starts
        if n == 0:
            return b""
        limit = held[n - 1].end
        redact: list[Finding] = []
        for g, fs in per_guard:
            mine = [f for f in fs if f.end <= limit]
            if not mine:
                continue
            rules = Counter(f.rule for f in mine)
            action = "audit" if g.audit_only and g.action != "audit" else g.action
            if action == "block":
                self._settle(ctx, g, rules)  # raises: the stream ends with the dialect's error event
            self._found.setdefault(g.id, Counter()).update(rules)
            self._actions[g.id] = g.action  # record() turns it into audit under audit_only
            if action == "redact":
                redact += mine
        out = b"".join(_apply(ev, redact) for ev in held[:n])
        self._delivered_text += sum(1 for ev in held[:n] if ev.slots)
        self._held = held[n:]
        return out


def _apply(ev: _Event, findings: list[Finding]) -> bytes:
    """Redact the findings that touch this event's text; a finding spanning events leaves its placeholder in
    the event where it starts and removes its characters from the others."""
    if not findings or ev.start == ev.end:
        return ev.encode(False)
    changed = False
    pos = ev.start
    for container, key, s in ev.slots:
        s_start, s_end = pos, pos + len(s)
        pos = s_end
        cuts = [f for f in findings if f.start < s_end and f.end > s_start]
        if not cuts:
            continue
        out, i = [], 0
        for f in sorted(cuts, key=lambda f: f.start):
            a, b = max(f.start - s_start, 0), min(f.end - s_start, len(s))
            if a < i:
                continue
            out.append(s[i:a])
            if f.start >= s_start:
                out.append(f"[REDACTED:{f.rule}]")
            i = b
        out.append(s[i:])
        container[key] = "".join(out)
        changed = True
    return ev.encode(changed)
