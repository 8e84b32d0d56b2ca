"""What every translator provides, and the per-request parameters it is given. Pure."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

# DONE and Event are defined with the dialects, whose writers frame them; translators import them from here
from dataplane.dialects.base import DONE as DONE
from dataplane.dialects.base import ErrorKind
from dataplane.dialects.base import Event as Event
from dataplane.dialects.client_errors import GatewayError


class Untranslatable(GatewayError):
    """The request uses a feature the provider's API cannot express faithfully: a 400 in the client's dialect."""

    def __init__(self, message: str):
        super().__init__(400, ErrorKind.INVALID_REQUEST, message)


@dataclass(frozen=True, slots=True)
class Params:
    """What a translation needs to know about one request besides its body."""

    client_model: str  # the model name the client asked for: echoed back in responses
    stream: bool
    created: int  # unix seconds, for OpenAI-shaped responses (the data plane's clock)
    provider_kind: str = ""  # adapter kind, e.g. "openai" vs "openai_compatible" (max-token field name)
    max_output_tokens: int = 0  # the model's policy limit, used when the target API requires a value
    upstream_model: str = ""  # the provider's name for the model (count requests that name it in the body)


class EventTranslator(Protocol):
    """Turns each provider stream event into zero or more client stream events, keeping state in between."""

    def feed(self, name: str | None, data: Any) -> list[Event]: ...


class Session(Protocol):
    """One request's translation: the request body, then its response or stream."""

    def request(self, body: dict[str, Any]) -> dict[str, Any]: ...

    def response(self, body: dict[str, Any]) -> dict[str, Any]: ...

    def stream(self) -> EventTranslator: ...


class Translator(Protocol):
    client: str  # dialect family of the client ("openai", "anthropic", "gemini")
    client_operation: str  # which of that family's APIs: "chat", "responses", "messages", "generate"
    provider: str  # dialect family the provider speaks
    operation: str  # the provider adapter's path key for the translated request ("chat", "messages")

    def open(self, params: Params) -> Session: ...


def text_of(content: Any, sep: str = "\n") -> str:
    """The text of a string or a list of {"type": "text", "text": ...} blocks/parts (other kinds ignored)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return sep.join(b["text"] for b in content if isinstance(b, dict) and isinstance(b.get("text"), str))
    return ""


class StatelessSession:
    """A Session whose translation needs nothing from the request but its Params."""

    __slots__ = ("_p", "_request", "_response", "_stream")

    def __init__(self, p: Params, request: Callable[[dict[str, Any], Params], dict[str, Any]],
                 response: Callable[[dict[str, Any], Params], dict[str, Any]],
                 stream: Callable[[Params], EventTranslator]) -> None:
        self._p = p
        self._request = request
        self._response = response
        self._stream = stream

    def request(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._request(body, self._p)

    def response(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._response(body, self._p)

    def stream(self) -> EventTranslator:
        return self._stream(self._p)


def wants_stream_usage(body: dict[str, Any]) -> bool:
    """An OpenAI chat request's stream_options.include_usage."""
    opts = body.get("stream_options")
    return isinstance(opts, dict) and opts.get("include_usage") is True


def stream_error_message(data: dict[str, Any]) -> str:
    """The message of a provider stream event that carries `error` in place of its payload."""
    err = data.get("error") or {}
    message = err.get("message") if isinstance(err, dict) else str(err)
    return message or "provider error"


class ChatStreamTranslator:
    """Base of the EventTranslators fed an OpenAI chat stream: nothing after the end, `[DONE]` closes,
    non-object data is skipped, and an error chunk becomes one client error event that ends the stream.
    Of each chunk's first choice, text and tool-call deltas go to the subclass's hooks; the stream
    closes once the finish reason and the final usage (asked for with include_usage) have both come."""

    __slots__ = ("_done", "_finish", "_usage", "_usage_final")
    # set by each subclass's __init__
    _done: bool
    _finish: str | None
    _usage: Any
    _usage_final: bool

    def feed(self, name: str | None, data: Any) -> list[Event]:
        if self._done:
            return []
        if data is DONE:
            return self._close()
        if not isinstance(data, dict):
            return []
        if "error" in data and "choices" not in data:
            self._done = True
            return [self._error_event(stream_error_message(data))]
        out = self._chunk_start(data)
        choices = data.get("choices") or ()
        for choice in choices[:1]:
            delta = choice.get("delta") or {}
            text = delta.get("content") or delta.get("refusal")
            if text:
                out += self._text(text)
            for tc in delta.get("tool_calls") or ():
                out += self._tool(tc)
            if choice.get("finish_reason"):
                self._finish = choice["finish_reason"]
                out += self._finished()
        if isinstance(data.get("usage"), dict):
            self._usage = data["usage"]
            self._usage_final = not choices or self._finish is not None
        if self._finish is not None and self._usage_final:
            out += self._close()
        return out

    def _chunk_start(self, data: dict[str, Any]) -> list[Event]:
        """Events (or state) due for any chunk before its deltas."""
        return []

    def _text(self, text: str) -> list[Event]:
        raise NotImplementedError

    def _tool(self, tc: dict[str, Any]) -> list[Event]:
        raise NotImplementedError

    def _finished(self) -> list[Event]:
        """Events due when the finish reason arrives (usage may still follow)."""
        return []

    def _error_event(self, message: str) -> Event:
        raise NotImplementedError

    def _close(self) -> list[Event]:
        raise NotImplementedError
