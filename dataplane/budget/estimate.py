"""Worst-case cost of a request before it is forwarded (pure: bytes/dicts in, integers out).

Input tokens: bounded by the body's byte length. Every byte-level BPE / SentencePiece-with-byte-
fallback tokenizer emits at least one byte of text per token, and the JSON framing of each message
(`{"role":"user","content":""}`, 28 bytes) exceeds the few template tokens providers add per turn.
What bytes cannot bound is added on top: a tools preamble (Anthropic injects ~350-700 tokens when
tools are present) and media referenced or inlined in the body (an image URL is ~40 bytes but up to
~2,500 tokens). Documents/files/audio referenced by id or URL cannot be bounded from the body at
all; they are reserved at MEDIA_FILE_TOKENS each and any excess shows up as overshoot.

Output tokens: the client's cap (max_tokens / max_completion_tokens / max_output_tokens, read by the
dialect), clamped to the model's maximum; the model's maximum when the client sent none; the
configured default when the model has none either. Multiplied by the number of choices (`n`).

Cost: every input token at the dearest input class (plain, cache read or write, audio, long-context
tier), so this bounds any split, every output token at the output price. A model without a price
uses the policy's conservative default price: an unpriced model is never free.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from dataplane.pricing import Price

TEMPLATE_TOKENS = 16  # per-request framing a provider may add beyond the body (BOS, assistant prefix)
TOOLS_TOKENS = 1024  # tool-use system preamble injected by providers when tools are declared
MEDIA_IMAGE_TOKENS = 3000  # one image at the largest size any supported provider bills (~2,500)
MEDIA_FILE_TOKENS = 50_000  # a document/file/audio part; unbounded by the body, see module doc
FALLBACK_MAX_OUTPUT_TOKENS = 128_000  # no cap from the client, the model or the policy

# Structural markers only (a JSON key or a part "type" value), so prose that mentions images does not count.
_IMAGE = re.compile(rb'"type"\s*:\s*"(?:image|image_url|input_image)"|"(?:inline_data|inlineData)"\s*:')
_FILE = re.compile(rb'"type"\s*:\s*"(?:document|file|input_file|input_audio|audio)"|"(?:file_data|fileData)"\s*:')
_TOOLS = re.compile(rb'"(?:tools|functions|functionDeclarations|function_declarations)"\s*:\s*\[\s*\{')
# Cheap pre-filter: the regexes above run only when one of these substrings is present.
_HINTS = (b"image", b"file", b"audio", b"document", b"nline")


@dataclass(frozen=True, slots=True)
class Estimate:
    input_tokens: int
    output_tokens: int
    cost_pico: int


def input_tokens_upper_bound(raw: bytes) -> int:
    tokens = len(raw) + TEMPLATE_TOKENS
    if b'"tools"' in raw or b"unction" in raw:
        if _TOOLS.search(raw):
            tokens += TOOLS_TOKENS
    if any(h in raw for h in _HINTS):
        tokens += MEDIA_IMAGE_TOKENS * len(_IMAGE.findall(raw)) + MEDIA_FILE_TOKENS * len(_FILE.findall(raw))
    return tokens


def _choices(body: dict[str, Any]) -> int:
    n = body.get("n")
    if n is None:
        cfg = body.get("generationConfig") or body.get("generation_config")
        n = cfg.get("candidateCount") or cfg.get("candidate_count") if isinstance(cfg, dict) else None
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 1 else 1


def output_tokens_upper_bound(requested: int | None, body: dict[str, Any], model_max: int, default_max: int) -> int:
    cap = model_max or default_max or FALLBACK_MAX_OUTPUT_TOKENS
    per_choice = min(requested, cap) if isinstance(requested, int) and requested > 0 else cap
    return per_choice * _choices(body)


def worst_case(input_tokens: int, output_tokens: int, price: Price) -> Estimate:
    # the dearest class each token could fall in (cache writes, audio, a long-context tier): never under-reserve
    return Estimate(input_tokens, output_tokens,
                    input_tokens * price.dearest_input_pico + output_tokens * price.dearest_output_pico)
