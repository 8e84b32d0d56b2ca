"""What one client connection may cost a node: sizes, counts and times, enforced by dataplane/http/server.py."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HttpLimits:
    max_header_bytes: int = 64 * 1024  # request line + header section; larger -> 431
    max_url_bytes: int = 8 * 1024  # request target; longer -> 414
    max_headers: int = 100  # header fields; more -> 431
    header_timeout_s: float = 10.0  # first byte of a request (or of the connection) to the end of its headers -> 408
    body_timeout_s: float = 30.0  # longest silence while a request body is being received -> 408
    keepalive_timeout_s: float = 75.0  # idle keep-alive connection closed after this (longer than common LB idle timeouts)
    max_connections: int = 4096  # open client connections per node; new ones above it get 503 and are closed

    def problem(self) -> str | None:
        """Why these limits cannot be used, or None (the message names the setting)."""
        for name in ("max_header_bytes", "max_url_bytes", "max_headers", "max_connections"):
            if getattr(self, name) <= 0:
                return f"INTERLOCK_HTTP_{name.upper()} must be positive"
        for name in ("header_timeout_s", "body_timeout_s", "keepalive_timeout_s"):
            if not getattr(self, name) > 0:
                return f"INTERLOCK_HTTP_{name.upper()} must be positive"
        if self.max_url_bytes > self.max_header_bytes:
            return "INTERLOCK_HTTP_MAX_URL_BYTES cannot exceed INTERLOCK_HTTP_MAX_HEADER_BYTES (the URL is part of the head)"
        return None

    @property
    def sweep_interval_s(self) -> float:
        """How often deadlines are checked: a quarter of the shortest timeout, between 50 ms and 1 s."""
        shortest = min(self.header_timeout_s, self.body_timeout_s, self.keepalive_timeout_s)
        return min(1.0, max(0.05, shortest / 4))
