#!/usr/bin/env python3
"""Cost of cross-API translation per request, against same-dialect pass-through measured in the same run.

    flock /tmp/coord/bench.lock python benchmarks/translation.py [--iterations 3000] [--size-kb 76]

Body: a Claude Code-like /v1/messages turn (24 tools with JSON schemas, a long system prompt in
blocks with cache_control, a system-role message, a long history of text, tool_use and tool_result
blocks, thinking blocks with signatures), padded to --size-kb. For each direction it times, per
request, what the proxy does on the hot path:

  pass-through : parse body + serialise it for the upstream + parse the response for usage
  translated   : parse body + bind + translate request + serialise + parse the response for usage
                 + translate the response back (parse, map, serialise)

and prints p50/p99 of both, the added time (translated - pass-through, target <= 200 us p50) and
the ratio. A 20-chunk SSE stream translation is timed too (per stream, and per event).
Single process, no I/O; pin it with taskset for steadier figures.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dataplane.dialects.registry import default_dialects
from dataplane.providers.registry import default_providers
from dataplane.translate.base import Params
from dataplane.translate.registry import default_translations

TARGET_ADDED_P50_US = 200.0
ADAPTERS = {"openai": default_providers()["openai_compatible"], "anthropic": default_providers()["anthropic"]}
WORDS = ("the quick brown fox jumps over a lazy dog while the agent reads files runs tests and edits code "
         "carefully keeping changes small and reviewing diffs before committing").split()


def prose(n: int, seed: int) -> str:
    out, i = [], seed
    while sum(len(w) + 1 for w in out) < n:
        out.append(WORDS[i % len(WORDS)])
        i += 7
    return " ".join(out)


def tool(i: int) -> dict[str, Any]:
    props = {f"param_{k}": {"type": ["string", "integer", "boolean", "array"][k % 4], "description": prose(90, i + k)}
             for k in range(6)}
    props["param_3"]["items"] = {"type": "string"}
    return {"name": f"Tool{i}", "description": prose(700, i),
            "input_schema": {"type": "object", "properties": props, "required": ["param_0"],
                             "additionalProperties": False, "$schema": "http://json-schema.org/draft-07/schema#"}}


def claude_code_body(size_kb: int) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "bench-model", "max_tokens": 32000, "stream": False, "temperature": 1,
        "metadata": {"user_id": "user_" + "ab12" * 16 + "_account_5c1e6a0e-0000-4000-8000-000000000000_session_"
                                "7d7c9a3e-0000-4000-8000-000000000000"},
        "system": [{"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."},
                   {"type": "text", "text": prose(12_000, 3), "cache_control": {"type": "ephemeral"}}],
        "tools": [tool(i) for i in range(24)],
        "messages": [{"role": "system", "content": "<system-reminder>" + prose(600, 5) + "</system-reminder>"}],
    }
    body["tools"][-1]["cache_control"] = {"type": "ephemeral"}
    turn = 0
    while len(orjson.dumps(body)) < size_kb * 1000 - 600:
        tid = f"toolu_{turn:024d}"
        msgs = body["messages"]
        msgs.append({"role": "user", "content": [{"type": "text", "text": prose(200, turn)}]})
        msgs.append({"role": "assistant", "content": [
            {"type": "thinking", "thinking": prose(150, turn + 1), "signature": "EqQBCkYIBxgCKkB" + "x" * 80},
            {"type": "text", "text": prose(120, turn + 2)},
            {"type": "tool_use", "id": tid, "name": f"Tool{turn % 24}", "input": {"param_0": prose(60, turn), "param_1": 3}}]})
        msgs.append({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": tid, "content": [{"type": "text", "text": prose(700, turn + 3)}]}]})
        turn += 1
    msgs = body["messages"]
    msgs[-1]["content"][-1]["cache_control"] = {"type": "ephemeral"}
    return body


def openai_body_from(anthropic_body: dict[str, Any]) -> dict[str, Any]:
    """The same conversation as an OpenAI client would send it (for the OpenAI -> Anthropic direction)."""
    xl = default_translations(default_dialects()).bind(default_dialects()["anthropic"], "messages", ADAPTERS["openai"],
                                                      params())
    return xl.request(anthropic_body)


def responses_body_from(chat: dict[str, Any]) -> dict[str, Any]:
    """The same conversation as Codex CLI would send it to /v1/responses."""
    msgs = chat["messages"]
    items: list[dict[str, Any]] = []
    for m in msgs[1:]:
        if m["role"] in ("system", "user"):
            role = "developer" if m["role"] == "system" else "user"
            items.append({"type": "message", "role": role, "content": [{"type": "input_text", "text": m["content"]}]})
        elif m["role"] == "assistant":
            if m.get("content"):
                items.append({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": m["content"]}]})
            items += [{"type": "function_call", "call_id": c["id"], "name": c["function"]["name"],
                       "arguments": c["function"]["arguments"]} for c in m.get("tool_calls") or ()]
            items.append({"type": "reasoning", "id": "rs_x", "summary": [], "encrypted_content": "gAAAAB" + "x" * 400})
        elif m["role"] == "tool":
            items.append({"type": "function_call_output", "call_id": m["tool_call_id"], "output": m["content"]})
    tools = [{"type": "function", **t["function"]} for t in chat["tools"]]
    return {"model": "bench-model", "instructions": msgs[0]["content"], "input": items, "tools": tools, "store": False,
            "include": ["reasoning.encrypted_content"], "reasoning": {"effort": "medium"}, "stream": False}


def gemini_body_from(chat: dict[str, Any]) -> dict[str, Any]:
    """The same conversation as Gemini CLI would send it to :streamGenerateContent."""
    contents: list[dict[str, Any]] = []
    for m in chat["messages"][1:]:
        if m["role"] in ("system", "user"):
            contents.append({"role": "user", "parts": [{"text": m["content"]}]})
        elif m["role"] == "assistant":
            parts: list[dict[str, Any]] = [{"text": m["content"]}] if m.get("content") else []
            parts += [{"functionCall": {"id": c["id"], "name": c["function"]["name"],
                                        "args": orjson.loads(c["function"]["arguments"])}} for c in m.get("tool_calls") or ()]
            contents.append({"role": "model", "parts": parts})
        elif m["role"] == "tool":
            contents.append({"role": "user", "parts": [{"functionResponse": {
                "id": m["tool_call_id"], "name": "tool", "response": {"output": m["content"]}}}]})
    decls = [{"name": t["function"]["name"], "description": t["function"].get("description", ""),
              "parametersJsonSchema": t["function"]["parameters"]} for t in chat["tools"]]
    return {"systemInstruction": {"parts": [{"text": chat["messages"][0]["content"]}]}, "contents": contents,
            "tools": [{"functionDeclarations": decls}], "generationConfig": {"temperature": 1, "maxOutputTokens": 32000}}


def params(stream: bool = False) -> Params:
    return Params(client_model="bench-model", stream=stream, created=1_700_000_000, provider_kind="openai_compatible",
                  max_output_tokens=0)


OPENAI_RESPONSE = orjson.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1, "model": "gpt-x",
    "choices": [{"index": 0, "finish_reason": "tool_calls", "logprobs": None, "message": {
        "role": "assistant", "content": prose(400, 1), "refusal": None,
        "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "Tool3", "arguments": '{"param_0":"a.py"}'}}]}}],
    "usage": {"prompt_tokens": 19000, "completion_tokens": 140, "total_tokens": 19140,
              "prompt_tokens_details": {"cached_tokens": 18000}}})
ANTHROPIC_RESPONSE = orjson.dumps({
    "id": "msg_bench", "type": "message", "role": "assistant", "model": "claude-x", "stop_reason": "tool_use",
    "stop_sequence": None, "content": [
        {"type": "text", "text": prose(400, 1)},
        {"type": "tool_use", "id": "toolu_1", "name": "Tool3", "input": {"param_0": "a.py"}}],
    "usage": {"input_tokens": 1000, "cache_read_input_tokens": 18000, "cache_creation_input_tokens": 0,
              "output_tokens": 140}})


def openai_stream(n: int) -> bytes:
    base = {"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1, "model": "gpt-x", "usage": None}
    chunks = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}]
    chunks += [{**base, "choices": [{"index": 0, "delta": {"content": " word"}, "finish_reason": None}]} for _ in range(n)]
    chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    chunks.append({**base, "choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": n, "total_tokens": 10 + n}})
    return b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"


def timed(fn: Callable[[], object], iterations: int) -> list[float]:
    for _ in range(min(200, iterations)):
        fn()
    out = []
    clock = time.perf_counter_ns
    for _ in range(iterations):
        t0 = clock()
        fn()
        out.append((clock() - t0) / 1000)
    return out


def pct(xs: list[float], p: float) -> float:
    return sorted(xs)[min(len(xs) - 1, int(len(xs) * p))]


def direction(name: str, raw: bytes, client: str, operation: str, provider: str, response: bytes,
              iterations: int) -> tuple[float, float]:
    dialects = default_dialects()
    translations = default_translations(dialects)
    client_dialect, provider_dialect = dialects[client], dialects[provider]

    def passthrough() -> None:
        body = orjson.loads(raw)
        body["model"] = "upstream"
        orjson.dumps(body)
        client_dialect.usage_from_body(orjson.loads(response))

    def translated() -> None:
        body = orjson.loads(raw)
        xl = translations.bind(client_dialect, operation, ADAPTERS[provider], params())
        out = xl.request(body)
        out["model"] = "upstream"
        orjson.dumps(out)
        provider_dialect.usage_from_body(orjson.loads(response))
        xl.response(200, response)

    # interleave the two so machine noise hits both alike
    base: list[float] = []
    trans: list[float] = []
    for _ in range(5):
        base += timed(passthrough, iterations // 5)
        trans += timed(translated, iterations // 5)
    b50, t50 = statistics.median(base), statistics.median(trans)
    added = t50 - b50
    print(f"{name:<41} {len(raw) / 1000:>6.1f} KB  pass-through p50 {b50:7.1f} us p99 {pct(base, .99):7.1f} us | "
          f"translated p50 {t50:7.1f} us p99 {pct(trans, .99):7.1f} us | added p50 {added:6.1f} us | "
          f"ratio {t50 / b50:4.2f}x  [{'OK' if added <= TARGET_ADDED_P50_US else 'OVER'} <= {TARGET_ADDED_P50_US:.0f} us]")
    return added, t50 / b50


def stream_cost(iterations: int, events: int) -> None:
    dialects = default_dialects()
    translations = default_translations(dialects)
    raw = openai_stream(events)
    pieces = [raw[i : i + 1400] for i in range(0, len(raw), 1400)]  # roughly what one read returns

    def scan_only() -> None:
        s = dialects["openai"].stream_scanner(False)
        for p in pieces:
            s.feed(p)

    def translate() -> None:
        s = translations.bind(dialects["anthropic"], "messages", ADAPTERS["openai"], params(stream=True)).scanner()
        for p in pieces:
            s.feed(p)

    base, trans = timed(scan_only, iterations), timed(translate, iterations)
    b50, t50 = statistics.median(base), statistics.median(trans)
    print(f"{'stream openai->anthropic':<41} {events + 4:>3} events  usage scan only p50 {b50:7.1f} us | "
          f"scan + translate p50 {t50:7.1f} us | added {t50 - b50:6.1f} us per stream, "
          f"{(t50 - b50) / (events + 4):5.2f} us per event")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iterations", type=int, default=3000)
    ap.add_argument("--size-kb", type=int, default=76)
    args = ap.parse_args()
    gc.disable()  # the data plane raises the GC threshold (INTERLOCK_TUNE_GC); keep collections out of the samples
    anthropic_body = claude_code_body(args.size_kb)
    a_raw = orjson.dumps(anthropic_body)
    chat = openai_body_from(anthropic_body)
    o_raw = orjson.dumps(chat)
    r_raw = orjson.dumps(responses_body_from(chat))
    g_raw = orjson.dumps(gemini_body_from(chat))
    print(f"Claude Code-like turn: {len(anthropic_body['tools'])} tools, {len(anthropic_body['messages'])} messages, "
          f"{len(a_raw)} bytes; {args.iterations} iterations per variant, interleaved; Python {sys.version.split()[0]}")
    results = [
        direction("anthropic client -> openai provider", a_raw, "anthropic", "messages", "openai", OPENAI_RESPONSE, args.iterations),
        direction("openai client -> anthropic provider", o_raw, "openai", "chat", "anthropic", ANTHROPIC_RESPONSE, args.iterations),
        direction("responses client -> anthropic (via chat)", r_raw, "openai_responses", "responses", "anthropic",
                  ANTHROPIC_RESPONSE, args.iterations),
        direction("gemini client -> openai provider", g_raw, "gemini", "generate", "openai", OPENAI_RESPONSE, args.iterations),
        direction("gemini client -> anthropic (via chat)", g_raw, "gemini", "generate", "anthropic", ANTHROPIC_RESPONSE,
                  args.iterations),
    ]
    stream_cost(args.iterations, 20)
    worst = max(r[0] for r in results)
    print(f"worst added p50: {worst:.1f} us (target <= {TARGET_ADDED_P50_US:.0f} us): "
          f"{'MET' if worst <= TARGET_ADDED_P50_US else 'NOT MET'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
