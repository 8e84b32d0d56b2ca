"""Failures of an upstream exchange. Messages never carry header values (they may hold credentials)."""

from __future__ import annotations


class UpstreamError(Exception):
    """Any failure talking to the upstream."""


class UpstreamConnectError(UpstreamError):
    """Could not open a connection (refused, unreachable, DNS, TLS handshake or certificate)."""


class UpstreamTimeout(UpstreamError, TimeoutError):
    """The connect timeout or the exchange's total deadline passed."""


class UpstreamDisconnected(UpstreamError):
    """The connection closed or reset before the response was complete."""


class UpstreamProtocolError(UpstreamError):
    """The upstream sent something that is not a valid HTTP/1.1 response."""
