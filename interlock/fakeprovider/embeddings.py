"""OpenAI embeddings dialect (pure): deterministic unit vectors derived from the input.

Values are float32-exact, so `encoding_format: "float"` and `"base64"` (little-endian
float32, what the SDK requests by default) decode to identical numbers.
Usage: text inputs count ceil(utf8_bytes/4) tokens each, token-id inputs count their length.
"""

from __future__ import annotations

import base64
import hashlib
import math
import struct
from dataclasses import dataclass
from typing import Any, TypeGuard

from .model import RequestError
from .reply import estimate_tokens

Input = str | tuple[int, ...]


@dataclass(frozen=True)
class EmbeddingRequest:
    model: str
    inputs: tuple[Input, ...]
    base64: bool
    dimensions: int | None


def _is_tokens(value: Any) -> TypeGuard[list[int]]:
    return (
        isinstance(value, list) and bool(value) and all(isinstance(t, int) and not isinstance(t, bool) for t in value)
    )


def parse(body: Any) -> EmbeddingRequest:
    if not isinstance(body, dict):
        raise RequestError("We could not parse the JSON body of your request: expected a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RequestError("you must provide a model parameter", "model")
    raw = body.get("input")
    inputs: list[Input]
    if isinstance(raw, str):
        inputs = [raw]
    elif _is_tokens(raw):
        inputs = [tuple(raw)]
    elif isinstance(raw, list) and raw and all(isinstance(x, str) or _is_tokens(x) for x in raw):
        inputs = [x if isinstance(x, str) else tuple(x) for x in raw]
    else:
        raise RequestError("'input' must be a string, an array of strings, or token arrays, and not empty.", "input")
    if any(x == "" for x in inputs):
        raise RequestError("'input' cannot contain an empty string.", "input")
    fmt = body.get("encoding_format", "float")
    if fmt not in ("float", "base64"):
        raise RequestError("'encoding_format' must be 'float' or 'base64'.", "encoding_format")
    dims = body.get("dimensions")
    if dims is not None and (not isinstance(dims, int) or isinstance(dims, bool) or not 1 <= dims <= 8192):
        raise RequestError("'dimensions' must be an integer in 1..8192.", "dimensions")
    return EmbeddingRequest(model=model, inputs=tuple(inputs), base64=fmt == "base64", dimensions=dims)


def vector(item: Input, dimensions: int) -> list[float]:
    seed = item.encode() if isinstance(item, str) else struct.pack(f"<{len(item)}q", *item)
    stream = b"".join(
        hashlib.sha256(seed + i.to_bytes(4, "little")).digest() for i in range(math.ceil(dimensions * 4 / 32))
    )
    raw = [n / 2**31 - 1.0 for n in struct.unpack(f"<{dimensions}I", stream[: dimensions * 4])]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    # Round-trip through float32 so the JSON floats equal the base64 payload exactly.
    return list(struct.unpack(f"<{dimensions}f", struct.pack(f"<{dimensions}f", *(x / norm for x in raw))))


def token_count(item: Input) -> int:
    return estimate_tokens(item) if isinstance(item, str) else len(item)


def render(req: EmbeddingRequest, default_dimensions: int) -> dict[str, Any]:
    dims = req.dimensions or default_dimensions
    data = []
    for index, item in enumerate(req.inputs):
        vec = vector(item, dims)
        encoded: Any = base64.b64encode(struct.pack(f"<{dims}f", *vec)).decode() if req.base64 else vec
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    tokens = sum(token_count(item) for item in req.inputs)
    return {
        "object": "list",
        "data": data,
        "model": req.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
