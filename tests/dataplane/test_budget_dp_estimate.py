"""Worst-case estimation: never below what a provider bills for the same body."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from dataplane.budget.estimate import (
    MEDIA_FILE_TOKENS,
    MEDIA_IMAGE_TOKENS,
    TOOLS_TOKENS,
    input_tokens_upper_bound,
    output_tokens_upper_bound,
    worst_case,
)
from dataplane.dialects.anthropic import AnthropicDialect
from dataplane.dialects.openai import OpenAIDialect
from dataplane.pricing import Price
from interlock.fakeprovider.reply import estimate_tokens


@given(st.lists(st.text(min_size=0, max_size=400), min_size=1, max_size=8), st.text(max_size=200))
def test_input_bound_covers_the_fake_providers_count_and_one_token_per_byte(texts: list[str], system: str) -> None:
    body = {"model": "m", "system": system, "messages": [{"role": "user", "content": t} for t in texts]}
    raw = orjson.dumps(body)
    bound = input_tokens_upper_bound(raw)
    # the fake bills ceil(bytes/4) per turn; a byte-level tokenizer at most one token per byte of text
    assert bound >= sum(estimate_tokens(t) for t in [system, *texts])
    assert bound >= sum(len(t.encode()) for t in [system, *texts])


def test_tools_and_media_add_what_bytes_cannot_bound() -> None:
    plain = orjson.dumps({"messages": [{"role": "user", "content": "describe the image file in this document"}]})
    assert input_tokens_upper_bound(plain) == len(plain) + 16  # prose that mentions media/tools adds nothing
    tools = orjson.dumps({"messages": [], "tools": [{"type": "function", "function": {"name": "f"}}]})
    assert input_tokens_upper_bound(tools) == len(tools) + 16 + TOOLS_TOKENS
    images = orjson.dumps({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://x/a.png"}},
        {"type": "image", "source": {"type": "url", "url": "https://x/b.png"}},
        {"type": "document", "source": {"type": "url", "url": "https://x/c.pdf"}},
    ]}]})
    assert input_tokens_upper_bound(images) == len(images) + 16 + 2 * MEDIA_IMAGE_TOKENS + MEDIA_FILE_TOKENS
    gemini = b'{"contents":[{"parts":[{"inline_data": {"mime_type":"image/png","data":"AAAA"}},{"fileData":{"fileUri":"x"}}]}]}'
    assert input_tokens_upper_bound(gemini) == len(gemini) + 16 + MEDIA_IMAGE_TOKENS + MEDIA_FILE_TOKENS


def test_output_bound_uses_the_clients_cap_then_the_model_then_the_default() -> None:
    oa, an = OpenAIDialect(), AnthropicDialect()
    assert output_tokens_upper_bound(oa.max_output_tokens({"max_completion_tokens": 50}), {}, 1000, 32768) == 50
    assert output_tokens_upper_bound(oa.max_output_tokens({"max_tokens": 5000}), {}, 1000, 32768) == 1000  # model max
    assert output_tokens_upper_bound(an.max_output_tokens({}), {}, 0, 32768) == 32768
    assert output_tokens_upper_bound(None, {}, 4096, 32768) == 4096
    assert output_tokens_upper_bound(100, {"n": 3}, 0, 0) == 300  # every choice can use the whole cap
    assert output_tokens_upper_bound(None, {"generationConfig": {"candidateCount": 2}}, 10, 0) == 20


def test_worst_case_charges_every_input_token_at_the_dearer_input_price() -> None:
    price = Price(input_pico=3_000_000, output_pico=15_000_000, cached_pico=300_000, version="v")
    assert worst_case(100, 10, price).cost_pico == 100 * 3_000_000 + 10 * 15_000_000
    odd = Price(input_pico=1, output_pico=2, cached_pico=5, version="v")  # never dearer in practice, still bounded
    assert worst_case(10, 0, odd).cost_pico == 50
