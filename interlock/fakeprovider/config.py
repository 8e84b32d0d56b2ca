"""Server configuration, fault rules, and per-request option resolution.

Per-request headers (all optional):
  x-fake-latency-ms         delay before the first response byte
  x-fake-chunk-delay-ms     delay between consecutive stream events
  x-fake-output-tokens      words (= content chunks = output tokens) in a text reply
  x-fake-status             answer with this 4xx/5xx error in the request's dialect
                            (429/503/529 carry retry-after + retry-after-ms); 200 = no fault
  x-fake-fail-after-chunks  streams: reset the connection after N SSE events (OpenAI's
                            role chunk and Anthropic's message_start/ping count);
                            non-streams: send half the body, then reset
  x-fake-cached-tokens      report this many prompt tokens as cache reads

Precedence for one request: headers > the fault rule consumed for it > config.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DEFAULT_MODELS: tuple[str, ...] = (
    "gpt-4o-mini",
    "gpt-4o",
    "text-embedding-3-small",
    "claude-sonnet-4-5",
    "claude-haiku-4-5",
    "gemini-2.0-flash",
)

H_LATENCY = "x-fake-latency-ms"
H_CHUNK_DELAY = "x-fake-chunk-delay-ms"
H_OUTPUT_TOKENS = "x-fake-output-tokens"
H_STATUS = "x-fake-status"
H_FAIL_AFTER = "x-fake-fail-after-chunks"
H_CACHED = "x-fake-cached-tokens"
HEADERS: tuple[str, ...] = (H_LATENCY, H_CHUNK_DELAY, H_OUTPUT_TOKENS, H_STATUS, H_FAIL_AFTER, H_CACHED)

MAX_OUTPUT_TOKENS = 100_000  # guards the fake against a typo'd header eating memory


class OptionError(ValueError):
    """A `x-fake-*` header or fault rule is malformed; rendered as a 400 in the caller's dialect."""


@dataclass(frozen=True)
class FaultRule:
    """One entry of the fault schedule: the next `count` matching requests get this fault.

    `count=None` applies forever (until the schedule is cleared). `path` is a
    prefix of the request path; None matches every generation/embedding path.
    """

    status: int | None = None
    fail_after_chunks: int | None = None
    latency_ms: float | None = None
    count: int | None = 1
    path: str | None = None

    def __post_init__(self) -> None:
        for name, kinds in (("status", int), ("fail_after_chunks", int), ("count", int), ("latency_ms", (int, float))):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, kinds)):
                raise OptionError(f"fault {name} must be a number, got {value!r}")
        if self.path is not None and not isinstance(self.path, str):
            raise OptionError(f"fault path must be a string, got {self.path!r}")
        if self.status is None and self.fail_after_chunks is None and self.latency_ms is None:
            raise OptionError("a fault needs status, fail_after_chunks or latency_ms")
        if self.status is not None:
            _check_status(self.status)
        if self.count is not None and self.count < 1:
            raise OptionError("fault count must be >= 1 (or null for forever)")
        if self.fail_after_chunks is not None and self.fail_after_chunks < 0:
            raise OptionError("fail_after_chunks must be >= 0")
        if self.latency_ms is not None and self.latency_ms < 0:
            raise OptionError("latency_ms must be >= 0")

    @classmethod
    def from_json(cls, raw: Any) -> FaultRule:
        if not isinstance(raw, dict):
            raise OptionError("a fault must be a JSON object")
        unknown = set(raw) - {"status", "fail_after_chunks", "latency_ms", "count", "path"}
        if unknown:
            raise OptionError(f"unknown fault fields: {sorted(unknown)}")
        return cls(**raw)

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "fail_after_chunks": self.fail_after_chunks,
            "latency_ms": self.latency_ms,
            "count": self.count,
            "path": self.path,
        }


@dataclass(frozen=True)
class FakeProviderConfig:
    latency_ms: float = 0.0  # before the first response byte (headers included)
    chunk_delay_ms: float = 0.0  # between consecutive stream events
    output_tokens: int = 20  # = words/content chunks in a text reply
    # a misbehaving provider: answer with `output_tokens` whatever max_tokens the request set (a budget's output
    # bound must then be enforced by the gateway); the recorded usage shows what was produced
    ignore_max_tokens: bool = False
    api_key: str | None = field(default=None, repr=False)  # None: any non-empty key is accepted
    faults: tuple[FaultRule, ...] = ()  # initial fault schedule
    retry_after_ms: int = 1000  # sent as retry-after (s, rounded up) and retry-after-ms on 429/503/529
    embedding_dimensions: int = 256
    models: tuple[str, ...] = DEFAULT_MODELS
    history_size: int = 100  # requests kept for /_fake/stats
    prompt_cache: bool = False  # model Anthropic prompt caching (cache_control): report cache reads and writes
    # /_fake/* (recent prompts, fault injection) needs 'Authorization: Bearer <admin_token>' when set; unset = open,
    # for tests on loopback. `interlock dev` sets it to the provider key (a 0600 file), so other local users can't.
    admin_token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not 1 <= self.output_tokens <= MAX_OUTPUT_TOKENS:
            raise ValueError(f"output_tokens must be in 1..{MAX_OUTPUT_TOKENS}")
        if self.latency_ms < 0 or self.chunk_delay_ms < 0 or self.retry_after_ms < 0:
            raise ValueError("latencies must be >= 0")
        if self.embedding_dimensions < 1:
            raise ValueError("embedding_dimensions must be >= 1")


@dataclass(frozen=True)
class RequestOptions:
    """Everything that shapes one response, after header/fault/config resolution."""

    latency_ms: float
    chunk_delay_ms: float
    output_tokens: int
    status: int | None
    fail_after_chunks: int | None
    cached_tokens: int


def _check_status(status: int) -> None:
    if not 400 <= status <= 599:
        raise OptionError(f"fault status must be 400..599, got {status}")


def _header_number(headers: Mapping[str, str], name: str, lo: float, hi: float) -> float | None:
    raw = headers.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise OptionError(f"{name}: {raw!r} is not a number") from None
    if not lo <= value <= hi:
        raise OptionError(f"{name}: {raw!r} is outside {lo:g}..{hi:g}")
    return value


def _header_int(headers: Mapping[str, str], name: str, lo: int, hi: int) -> int | None:
    value = _header_number(headers, name, lo, hi)
    if value is not None and value != int(value):
        raise OptionError(f"{name}: {value!r} is not an integer")
    return None if value is None else int(value)


@dataclass(frozen=True)
class HeaderOverrides:
    """The `x-fake-*` headers of one request; None = not given."""

    latency_ms: float | None = None
    chunk_delay_ms: float | None = None
    output_tokens: int | None = None
    status: int | None = None
    fail_after_chunks: int | None = None
    cached_tokens: int | None = None


def parse_headers(headers: Mapping[str, str]) -> HeaderOverrides:
    """Parsed before a fault is consumed, so a malformed header never eats a scheduled fault."""
    status = _header_int(headers, H_STATUS, 200, 599)
    if status is not None and status != 200:
        _check_status(status)
    return HeaderOverrides(
        latency_ms=_header_number(headers, H_LATENCY, 0, 3_600_000),
        chunk_delay_ms=_header_number(headers, H_CHUNK_DELAY, 0, 600_000),
        output_tokens=_header_int(headers, H_OUTPUT_TOKENS, 1, MAX_OUTPUT_TOKENS),
        status=status,
        fail_after_chunks=_header_int(headers, H_FAIL_AFTER, 0, MAX_OUTPUT_TOKENS),
        cached_tokens=_header_int(headers, H_CACHED, 0, 10_000_000),
    )


def _pick(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def resolve_options(config: FakeProviderConfig, hdr: HeaderOverrides, rule: FaultRule | None) -> RequestOptions:
    rule_status, rule_fail, rule_latency = (
        (rule.status, rule.fail_after_chunks, rule.latency_ms) if rule else (None,) * 3
    )
    status = _pick(hdr.status, rule_status)
    return RequestOptions(
        latency_ms=_pick(hdr.latency_ms, rule_latency, config.latency_ms),
        chunk_delay_ms=_pick(hdr.chunk_delay_ms, config.chunk_delay_ms),
        output_tokens=_pick(hdr.output_tokens, config.output_tokens),
        status=None if status == 200 else status,  # 200 lets a header cancel a scheduled status fault
        fail_after_chunks=_pick(hdr.fail_after_chunks, rule_fail),
        cached_tokens=hdr.cached_tokens or 0,
    )
