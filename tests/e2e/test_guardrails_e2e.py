"""Guardrails through a real data-plane node in front of the fake provider: what the provider actually received,
what the client actually got, and the usage event, for every dialect's request shape."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from controlplane.errors import PolicyInvalid
from controlplane.policy.compiler import compile_snapshot
from controlplane.policy.guardrails import Guardrail
from controlplane.policy.model import Model, PolicyDocument, Price
from tests.fixtures.gateway import Gateway, gateway_policy, native_gemini, running_gateway, wait_events

AWS_ID = "AKIAQ7ZL3XK5PW2MN4RT"
AWS_SECRET = "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"
PEM = ("-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAx3v9Qk2Lp8Zr5Tn1Wm7Yc4Hb6Jd0Fs3Ag9Ke2Mo5Pu8Ri\n"
       "Qk2Lp8Zr5Tn1Wm7Yc4Hb6Jd0Fs3Ag9Ke2Mo5Pu8RiX1v9Qk2Lp8Zr5Tn1Wm7Yc4\n-----END RSA PRIVATE KEY-----")
ENV_FILE = f"     1\tAWS_ACCESS_KEY_ID={AWS_ID}\n     2\tAWS_SECRET_ACCESS_KEY={AWS_SECRET}\n     3\tREGION=eu-west-1\n"
SECRETS = (AWS_ID, AWS_SECRET, "MIIEowIBAAKCAQEAx3v9Qk2Lp8Zr5Tn1")


def policy(fake_base: str, **guardrail: Any) -> PolicyDocument:
    doc = gateway_policy(fake_base, providers=[native_gemini(fake_base)],
                         models=[Model(name="gem-t", provider="fg", upstream="gemini-2.0-flash",
                                       price=Price(input="1", output="2"))])
    g = Guardrail.model_validate({"id": "no-secrets", "detect": ["secrets"], **guardrail})
    return doc.model_copy(update={"guardrails": [g]})


@asynccontextmanager
async def guarded(fake_provider, tmp_path: Path, **guardrail: Any) -> AsyncIterator[Gateway]:  # type: ignore[no-untyped-def]
    async with running_gateway(fake_provider.base_url, tmp_path, policy=policy(fake_provider.base_url, **guardrail)) as gw:
        yield gw


# (path, body, auth header name): each carries the secrets where that dialect puts tool results / system text
def requests() -> list[tuple[str, dict[str, Any]]]:
    return [
        ("/v1/chat/completions", {"model": "gpt-t", "messages": [
            {"role": "system", "content": f"deploy with {AWS_ID}"},
            {"role": "user", "content": "read .env"},
            {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {
                "name": "read", "arguments": orjson.dumps({"path": ".env", "aws_secret_access_key": AWS_SECRET}).decode()}}]},
            {"role": "tool", "tool_call_id": "c1", "content": ENV_FILE + PEM}]}),
        ("/v1/messages", {"model": "claude-t", "max_tokens": 50, "system": [{"type": "text", "text": PEM}],
                          "messages": [
            {"role": "user", "content": "read .env"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Read",
                                               "input": {"file_path": ".env", "aws_secret_access_key": AWS_SECRET}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": ENV_FILE}]}]}),
        ("/v1/messages/count_tokens", {"model": "claude-t", "messages": [
            {"role": "user", "content": [{"type": "document", "source": {"type": "text", "media_type": "text/plain",
                                                                         "data": "x"}},
                                         {"type": "text", "text": ENV_FILE + PEM}]}]}),
        ("/v1/responses", {"model": "gpt-t", "instructions": f"key {AWS_ID}", "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "read it"}]},
            {"type": "function_call", "call_id": "f1", "name": "shell", "arguments": orjson.dumps(
                {"cmd": f"export AWS_SECRET_ACCESS_KEY={AWS_SECRET}"}).decode()},
            {"type": "function_call_output", "call_id": "f1", "output": ENV_FILE + PEM}]}),
        ("/v1/embeddings", {"model": "gpt-t", "input": [ENV_FILE, PEM]}),
        ("/v1beta/models/gem-t:generateContent", {
            "systemInstruction": {"parts": [{"text": PEM}]},
            "contents": [{"role": "user", "parts": [{"text": "read"}]},
                         {"role": "model", "parts": [{"functionCall": {"name": "read", "args": {"secret_access_key": AWS_SECRET}}}]},
                         {"role": "user", "parts": [{"functionResponse": {"name": "read",
                                                                          "response": {"output": ENV_FILE}}}]}]}),
    ]


def auth(gw: Gateway, path: str) -> dict[str, str]:
    if path.startswith("/v1beta"):
        return {"x-goog-api-key": gw.key}
    if path.startswith("/v1/messages"):
        return {"x-api-key": gw.key, "anthropic-version": "2023-06-01"}
    return {"authorization": f"Bearer {gw.key}"}


async def test_redact_every_dialect_provider_never_sees_the_secret(fake_provider, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    async with guarded(fake_provider, tmp_path, action="redact") as gw, aiohttp.ClientSession() as s:
        for i, (path, body) in enumerate(requests()):
            r = await s.post(gw.url + path, data=orjson.dumps(body), headers=auth(gw, path))
            assert r.status == 200, (path, await r.text())
            seen = orjson.dumps(fake_provider.last_request).decode()
            for secret in SECRETS:
                assert secret not in seen, (path, secret)
            assert "[REDACTED:aws-access-key-id]" in seen and "[REDACTED:aws-secret-access-key]" in seen, path
            if "PRIVATE KEY" in orjson.dumps(body).decode():
                assert "[REDACTED:private-key]" in seen, path
            events = await wait_events(gw, i + 1)
            outcome = orjson.loads(events[i].guardrail_outcome)
            assert outcome[0]["id"] == "no-secrets" and outcome[0]["action"] == "redact"
            assert outcome[0]["rules"]["aws-access-key-id"] >= 1
            for secret in SECRETS:
                assert secret not in str(events[i])
        metrics = await (await s.get(gw.url + "/metrics")).text()
    assert 'interlock_guardrail_outcomes_total{guardrail="no-secrets",direction="input",action="redact"} 6' in metrics


async def test_block_answers_in_the_clients_dialect_and_records_a_free_event(fake_provider, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    async with guarded(fake_provider, tmp_path, action="block") as gw, aiohttp.ClientSession() as s:
        before = fake_provider.stats()["total"]
        for i, (path, body) in enumerate(requests()):
            r = await s.post(gw.url + path, data=orjson.dumps(body), headers=auth(gw, path))
            text = await r.text()
            assert r.status == 400, (path, text)
            err = orjson.loads(text)
            msg = err["error"]["message"]
            assert "no-secrets" in msg and "aws-access-key-id" in msg
            for secret in SECRETS:
                assert secret not in text
            if path.startswith("/v1/messages"):
                assert err["type"] == "error" and err["error"]["type"] == "invalid_request_error"
            elif path.startswith("/v1beta"):
                assert err["error"]["status"] == "INVALID_ARGUMENT"
            ev = (await wait_events(gw, i + 1))[i]
            assert ev.status == 400 and Decimal(ev.cost_usd or "0") == 0 and ev.input_tokens == ev.output_tokens == 0
            assert orjson.loads(ev.guardrail_outcome)[0]["action"] == "block"
        assert fake_provider.stats()["total"] == before  # nothing reached the provider


async def test_audit_only_forwards_unchanged_and_records(fake_provider, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    async with guarded(fake_provider, tmp_path, action="block", mode="audit_only") as gw, aiohttp.ClientSession() as s:
        path, body = requests()[0]
        r = await s.post(gw.url + path, data=orjson.dumps(body), headers=auth(gw, path))
        assert r.status == 200
        assert AWS_ID in orjson.dumps(fake_provider.last_request).decode()
        (ev,) = await wait_events(gw, 1)
        o = orjson.loads(ev.guardrail_outcome)[0]
        assert (o["action"], o["would"]) == ("audit", "block")


async def test_benign_coding_request_passes_untouched(fake_provider, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    body = {"model": "gpt-t", "messages": [{"role": "user", "content": (
        'const apiKey = process.env.API_KEY; // sha256-9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\n'
        'password = getPassword(user)\nid: 3f2b8c1e-4d5a-4e6f-8a7b-9c0d1e2f3a4b\n'
        '"integrity": "sha512-Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4=="')}]}
    async with guarded(fake_provider, tmp_path, action="block") as gw, aiohttp.ClientSession() as s:
        r = await s.post(gw.url + "/v1/chat/completions", data=orjson.dumps(body), headers=auth(gw, "/v1"))
        assert r.status == 200, await r.text()
        (ev,) = await wait_events(gw, 1)
        assert ev.guardrail_outcome == ""


@pytest.mark.parametrize("stream", [False, True])
async def test_output_redaction_of_the_models_answer(fake_provider, tmp_path: Path, stream: bool) -> None:  # type: ignore[no-untyped-def]
    # the fake echoes the first words of the prompt: the secret comes back in the answer
    body = {"model": "claude-t", "max_tokens": 30, "stream": stream,
            "messages": [{"role": "user", "content": f"{AWS_ID} ok"}]}
    async with guarded(fake_provider, tmp_path, action="redact", direction="output") as gw, \
            aiohttp.ClientSession() as s:
        r = await s.post(gw.url + "/v1/messages", data=orjson.dumps(body), headers=auth(gw, "/v1/messages"))
        text = await r.text()
        assert r.status == 200
        assert AWS_ID in orjson.dumps(fake_provider.last_request).decode()  # input not guarded here
        assert AWS_ID not in text and "[REDACTED:aws-access-key-id]" in text
        if stream:
            assert text.rstrip().endswith("data: {\"type\":\"message_stop\"}") or "message_stop" in text
        (ev,) = await wait_events(gw, 1)
        assert orjson.loads(ev.guardrail_outcome)[0]["direction"] == "output"
        assert ev.output_tokens > 0


async def test_output_block_on_a_stream_ends_it_with_the_dialects_error_event(fake_provider, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    body = {"model": "gpt-t", "stream": True, "messages": [{"role": "user", "content": f"{AWS_ID} ok"}]}
    async with guarded(fake_provider, tmp_path, action="block", direction="output") as gw, \
            aiohttp.ClientSession() as s:
        r = await s.post(gw.url + "/v1/chat/completions", data=orjson.dumps(body), headers=auth(gw, "/v1"))
        text = await r.text()
        (ev,) = await wait_events(gw, 1)
    assert r.status == 200 and AWS_ID not in text
    last = [ln for ln in text.splitlines() if ln.startswith("data:")][-1]
    assert "no-secrets" in last and "error" in last
    delivered = sum(1 for ln in text.splitlines() if ln.startswith("data:") and '"content":"' in ln
                    and '"content":""' not in ln)
    assert fake_provider.last_request["usage"]["output_tokens"] == 20  # what the provider generated
    assert ev.output_tokens == delivered < 20 and ev.usage_estimated  # billed: what the client received


def test_apply_rejects_a_bad_regex_with_its_position(fake_provider) -> None:  # type: ignore[no-untyped-def]
    doc = policy("http://127.0.0.1:1", custom=[{"id": "bad", "regex": "foo(bar"}], detect=[])
    with pytest.raises(PolicyInvalid) as e:
        compile_snapshot(doc, [], version=1, now_ms=0)
    assert "position 3" in str(e.value) and "'bad'" in str(e.value)
