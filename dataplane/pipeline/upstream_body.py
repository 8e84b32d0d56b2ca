"""A bounded read of a non-streamed upstream body: a provider (or anything at its URL) answering with an endless
or huge body must not make the node buffer it all (a 200 MB body once cost +370 MB)."""

from __future__ import annotations

from dataplane.dialects.base import ErrorKind
from dataplane.dialects.client_errors import GatewayError
from dataplane.pipeline.upstream import UpstreamResponse

MAX_UPSTREAM_BODY = 128 * 1024 * 1024  # above any real completion; base64 embeddings of 2,048 inputs are ~25 MB


async def read_bounded(upstream: UpstreamResponse, provider: str, limit: int | None = None) -> bytes:
    limit = limit or MAX_UPSTREAM_BODY
    parts: list[bytes] = []
    size = 0
    async for chunk in upstream.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise GatewayError(502, ErrorKind.UPSTREAM,
                               f"provider {provider!r} sent a response body over the {limit >> 20} MiB limit")
        parts.append(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)
