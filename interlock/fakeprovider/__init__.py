"""A deterministic fake of the OpenAI, Anthropic and Gemini HTTP APIs, for tests,
dev mode and benchmarks. See `server.create_app` / `server.start_fake_provider`."""

from .config import HEADERS, FakeProviderConfig, FaultRule
from .recorded import nginx_conf, write_recorded_responses
from .reply import build_reply, estimate_tokens
from .server import create_app, start_fake_provider, state_of
from .state import ProviderState, key_fingerprint

__all__ = [
    "HEADERS",
    "FakeProviderConfig",
    "FaultRule",
    "ProviderState",
    "build_reply",
    "create_app",
    "estimate_tokens",
    "key_fingerprint",
    "nginx_conf",
    "start_fake_provider",
    "state_of",
    "write_recorded_responses",
]
