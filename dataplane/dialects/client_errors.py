"""Errors the request pipeline turns into a response in the client's dialect."""

from __future__ import annotations

from dataplane.dialects.base import ErrorKind


class GatewayError(Exception):
    """A refusal or failure with the HTTP status and dialect-neutral kind to report."""

    def __init__(self, status: int, kind: str, message: str, headers: tuple[tuple[str, str], ...] = ()):
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message
        self.headers = headers


def bad_request(message: str) -> GatewayError:
    return GatewayError(400, ErrorKind.INVALID_REQUEST, message)


def unauthorized(message: str) -> GatewayError:
    return GatewayError(401, ErrorKind.AUTHENTICATION, message)
