"""What a provider adapter provides. Pure: no I/O; the data plane's upstream client does the sending."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ProviderAdapter:
    """Configuration of one provider kind.

    dialect: the API dialect the provider speaks natively (requests from clients of
        another dialect need translation, which the routing issue adds).
    paths: operation -> path appended to the provider's base URL.
    auth_header / auth_prefix: how the resolved credential is sent.
    forward_headers: client headers passed through verbatim (lower-case).
    static_headers: always sent.
    needs_usage_option: OpenAI only reports usage in streams when asked to.
    """

    kind: str
    dialect: str
    paths: dict[str, str]
    auth_header: str
    auth_prefix: str = ""
    credential_required: bool = True
    forward_headers: frozenset[str] = frozenset()
    static_headers: tuple[tuple[str, str], ...] = ()
    needs_usage_option: bool = False

    def auth_headers(self, secret: str | None) -> tuple[tuple[str, str], ...]:
        if not secret:
            return ()
        return ((self.auth_header, self.auth_prefix + secret),)

    def prepare_body(self, body: dict[str, Any], upstream_model: str, stream: bool) -> bool:
        """Rewrite the client's body for this provider in place (model name, usage reporting).

        Returns True when usage reporting was switched on for us, not the client,
        so the relay must hide the extra usage chunk from the client."""
        body["model"] = upstream_model
        if stream and self.needs_usage_option:
            opts = body.get("stream_options")
            if not isinstance(opts, dict):
                opts = {}
                body["stream_options"] = opts
            if opts.get("include_usage") is not True:
                opts["include_usage"] = True
                return True
        return False
