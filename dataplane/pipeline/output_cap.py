"""A stream that passes the output its budget reservation covers is cut, and billed for what was delivered.

The request sent upstream is already bounded (bound.py), but a provider may ignore the limit (a tool call
that runs on). This is an output filter on the context's writer (the one the output guardrails use, chained
after them when both apply): it counts the output the client received, one token per SSE event carrying
text (content, arguments, thinking...: a provider sends at least one token per such event, so a stream within
its limit is never cut). The first text event beyond the reservation is not delivered: the filter raises, and
the context ends the stream with the dialect's terminal error event and bills `bill()` - the delivered output,
never more than the reservation nor than what the provider reported.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import orjson

from dataplane.dialects.base import ErrorKind, Usage
from dataplane.dialects.client_errors import GatewayError
from dataplane.pipeline.output_guard import _text_slots

if TYPE_CHECKING:
    from dataplane.pipeline.context import OutputFilter, RequestContext


# Events that repeat text already streamed (the Responses API's *.done and final response): not new output.
_SUMMARY = frozenset({"response.completed", "response.incomplete", "response.failed"})


def _has_text(event: bytes) -> bool:
    for line in event.split(b"\n"):
        if line.startswith(b"data:"):
            try:
                obj = orjson.loads(line[5:])
            except orjson.JSONDecodeError:
                return False
            kind = obj.get("type") if isinstance(obj, dict) else None
            if isinstance(kind, str) and (kind.endswith(".done") or kind in _SUMMARY):
                return False
            slots: list = []
            _text_slots(obj, slots)
            return bool(slots)
    return False


class OutputCap:
    """Implements dataplane.pipeline.context.OutputFilter: at most `limit` text events reach the client."""

    def __init__(self, limit: int, inner: OutputFilter | None = None) -> None:
        self._limit = limit
        self._inner = inner
        self._buf = b""
        self.delivered = 0  # text events the client received
        self.cut = False  # the reservation was passed: the stream ends at the next write
        self._raised = False

    @property
    def blocked(self) -> bool:
        return self._raised or (self._inner is not None and self._inner.blocked)

    def bill(self, usage: Usage) -> Usage:
        if self._inner is not None and self._inner.blocked and not self._raised:
            return self._inner.bill(usage)
        out = min(self.delivered, self._limit)
        if usage.reported:
            out = min(out, usage.output_tokens)
        return replace(usage, output_tokens=out, reasoning_tokens=min(usage.reasoning_tokens, out), reported=False)

    def body(self, ctx: RequestContext, status: int, payload: bytes) -> bytes:
        # A whole answer cannot be cut: its excess is charged (settle) and the next admission sees it.
        return payload if self._inner is None else self._inner.body(ctx, status, payload)

    def chunk(self, ctx: RequestContext, data: bytes) -> bytes:
        if self.cut:
            raise self._error()
        if self._inner is not None:
            data = self._inner.chunk(ctx, data)
        return self._count(data)

    def flush(self, ctx: RequestContext) -> bytes:
        if self.cut:
            raise self._error()
        before = self.delivered
        out = self._count(self._inner.flush(ctx)) if self._inner is not None else b""
        rest, self._buf = self._buf, b""
        if rest.strip() and not self.cut:  # a last event without its blank line
            out += self._count(rest + b"\n\n")
            out += self._buf
            self._buf = b""
        if self.cut:
            self.delivered = before  # `out` is never written: the error event must be the last one
            raise self._error()
        return out

    def _count(self, data: bytes) -> bytes:
        """The prefix of `data` within the limit; sets `cut` when an event beyond it was withheld."""
        if not data:
            return b""
        buf = self._buf + data
        crlf = b"\r\n\r\n" in buf
        sep = b"\r\n\r\n" if crlf else b"\n\n"
        pos = 0
        while (end := buf.find(sep, pos)) >= 0:
            event = buf[pos:end]
            if event.strip() and _has_text(event.replace(b"\r\n", b"\n") if crlf else event):
                if self.delivered >= self._limit:
                    self.cut = True
                    self._buf = b""
                    if pos == 0:
                        raise self._error()
                    return buf[:pos]
                self.delivered += 1
            pos = end + len(sep)
        self._buf = buf[pos:]
        return buf[:pos]

    def _error(self) -> GatewayError:
        self._raised = True
        return GatewayError(402, ErrorKind.BUDGET,
                            f"the answer passed the {self._limit} output tokens its budget reservation covers (the "
                            "provider ignored the limit sent to it); the stream was cut there and only the output "
                            "delivered is billed: set a lower max_tokens or raise the budget")


def attach_output_cap(ctx: RequestContext) -> None:
    """Stage 7b: on a budgeted stream, cut it at the reserved output (after the output guardrails, if any)."""
    ticket = ctx.rec.budget
    if ticket is None or not ticket.output_tokens or not ctx.stream:
        return
    ctx.output = OutputCap(ticket.output_tokens, ctx.output)
