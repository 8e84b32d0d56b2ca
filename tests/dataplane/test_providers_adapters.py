"""Provider adapters, pure: URL, headers and body each kind builds from a real compiled snapshot."""

from __future__ import annotations

import base64
import re
from typing import Any

import orjson
import pytest

from controlplane.errors import PolicyInvalid
from controlplane.policy.compiler import compile_snapshot
from controlplane.policy.model import Model, PolicyDocument, Provider
from dataplane.dialects.client_errors import GatewayError
from dataplane.providers.eventstream import EventStreamToSSE
from dataplane.providers.registry import default_providers
from dataplane.snapshot.policy import CompiledPolicy, RuntimeProvider
from interlock.fakeprovider.eventstream import encode_message
from interlock_contracts.kinds import PROVIDER_KINDS, PROVIDER_OPTIONS

NOW = 1440938160.0  # 2015-08-30T12:36:00Z, the date of AWS's SigV4 test suite
SECRETS = {
    "AZ": "az-secret", "GEM": "gem-secret", "VTX": "ya29.token", "MIS": "mis-secret",
    "AWS": "AKIDEXAMPLE:wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    "AWS_JSON": '{"Version": 1, "AccessKeyId": "ASIAEXAMPLE", "SecretAccessKey": "s3cr3t", "SessionToken": "tok/en="}',
    "BRK": "bedrock-api-key",
}


def compiled(*providers: Provider) -> CompiledPolicy:
    doc = PolicyDocument(providers=list(providers), models=[Model(name=f"m-{p.name}", provider=p.name) for p in providers])
    snap = compile_snapshot(doc, [], version=1, now_ms=0)
    return CompiledPolicy.from_snapshot(
        snap, adapters=default_providers(clock=lambda: NOW),
        credentials=lambda ref: SECRETS.get(ref[4:]) if ref.startswith("env:") else None,
    )


def one(p: Provider) -> RuntimeProvider:
    return compiled(p).providers[p.name]


def build(prov: RuntimeProvider, op: str, model: str, stream: bool, body: dict[str, Any],
          client_headers: dict[str, str] | None = None) -> tuple[str, dict[str, str], dict[str, Any]]:
    body = dict(body)
    prov.adapter.prepare_body(body, model, stream)
    url, headers, payload = prov.adapter.build_request(prov, op, model, stream, body, client_headers or {})
    return url, {k.lower(): v for k, v in headers}, orjson.loads(payload)


CHAT = {"model": "client-name", "messages": [{"role": "user", "content": "hi"}]}
MSG = {"model": "client-name", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}


def test_every_kind_is_registered_with_the_options_the_control_plane_accepts() -> None:
    adapters = default_providers()
    assert set(adapters) == PROVIDER_KINDS
    for kind, adapter in adapters.items():
        assert adapter.options == PROVIDER_OPTIONS[kind], kind


def test_control_plane_rejects_options_the_kind_does_not_take() -> None:
    doc = PolicyDocument(providers=[Provider(name="a", kind="anthropic", base_url="https://x", options={"region": "x"})])
    with pytest.raises(PolicyInvalid, match="unknown options \\['region'\\] for kind 'anthropic'"):
        compile_snapshot(doc, [], version=1, now_ms=0)


@pytest.mark.parametrize("provider, missing", [
    (Provider(name="v", kind="vertex_anthropic", base_url="https://x", options={"project": "p"}), "['location']"),
    (Provider(name="b", kind="bedrock", base_url="https://x"), "['region']"),
])
def test_control_plane_names_the_options_a_kind_cannot_work_without(provider: Provider, missing: str) -> None:
    with pytest.raises(PolicyInvalid, match=f"needs options {re.escape(missing)}"):
        compile_snapshot(PolicyDocument(providers=[provider]), [], version=1, now_ms=0)
    ok = Provider(name="k", kind="bedrock", base_url="https://x", options={"auth": "api_key"})  # no region needed
    compile_snapshot(PolicyDocument(providers=[ok]), [], version=1, now_ms=0)


# ---- Azure OpenAI -------------------------------------------------------------------------------------

def test_azure_v1_api_keeps_openai_paths_with_the_deployment_as_model_and_api_key_header() -> None:
    prov = one(Provider(name="az", kind="azure_openai", base_url="https://res.openai.azure.com", credential="env:AZ"))
    url, headers, body = build(prov, "chat", "my-gpt4o-deployment", True, CHAT)
    assert url == "https://res.openai.azure.com/openai/v1/chat/completions"
    assert headers["api-key"] == "az-secret" and "authorization" not in headers
    assert body["model"] == "my-gpt4o-deployment"
    assert body["stream_options"] == {"include_usage": True}
    assert build(prov, "embeddings", "emb", False, {"model": "x", "input": "a"})[0].endswith("/openai/v1/embeddings")
    assert build(prov, "responses", "dep", False, {"model": "x", "input": "a"})[0].endswith("/openai/v1/responses")


def test_azure_deployments_api_puts_the_deployment_in_the_path_with_api_version_and_entra_token() -> None:
    prov = one(Provider(name="az", kind="azure_openai", base_url="https://res.openai.azure.com", credential="env:AZ",
                        options={"api_version": "2024-10-21", "auth": "entra"}))
    url, headers, _ = build(prov, "chat", "gpt 4o/x", False, CHAT)
    assert url == "https://res.openai.azure.com/openai/deployments/gpt%204o%2Fx/chat/completions?api-version=2024-10-21"
    assert headers["authorization"] == "Bearer az-secret" and "api-key" not in headers
    url, _, _ = build(prov, "embeddings", "emb-dep", False, {"model": "x", "input": "a"})
    assert url == "https://res.openai.azure.com/openai/deployments/emb-dep/embeddings?api-version=2024-10-21"
    url, _, body = build(prov, "responses", "dep", False, {"model": "x", "input": "a"})
    assert url == "https://res.openai.azure.com/openai/responses?api-version=2024-10-21" and body["model"] == "dep"


@pytest.mark.parametrize("options, problem", [
    ({"api_version": "2024-10-21&x=1"}, "api_version"),
    ({"auth": "password"}, "auth must be one of"),
])
def test_azure_bad_options_make_the_provider_unavailable_with_the_reason(options: dict[str, str], problem: str) -> None:
    prov = one(Provider(name="az", kind="azure_openai", base_url="https://x", credential="env:AZ", options=options))
    assert problem in prov.unavailable


# ---- Gemini and Vertex ------------------------------------------------------------------------------

GEN = {"model": "client", "contents": [{"role": "user", "parts": [{"text": "hi"}]}]}


def test_gemini_native_puts_the_model_in_the_path_and_the_key_in_x_goog_api_key() -> None:
    prov = one(Provider(name="g", kind="gemini", base_url="https://generativelanguage.googleapis.com", credential="env:GEM"))
    url, headers, body = build(prov, "generate", "gemini-2.5-pro", False, {**GEN, "stream": True})
    assert url == "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-pro:generateContent"
    assert headers["x-goog-api-key"] == "gem-secret" and "key=" not in url
    assert "model" not in body and "stream" not in body  # Google rejects unknown fields
    url, _, _ = build(prov, "generate", "gemini-2.5-pro", True, GEN)
    assert url.endswith("/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse")
    assert build(prov, "count_tokens", "gemini-2.5-pro", False, GEN)[0].endswith("/models/gemini-2.5-pro:countTokens")
    with pytest.raises(GatewayError, match="does not serve the 'chat' operation"):
        build(prov, "chat", "gemini-2.5-pro", False, CHAT)


def test_vertex_gemini_addresses_project_location_and_publisher_with_a_bearer_token() -> None:
    prov = one(Provider(name="v", kind="vertex_gemini", base_url="https://europe-west4-aiplatform.googleapis.com",
                        credential="env:VTX", options={"project": "acme-prod", "location": "europe-west4"}))
    url, headers, body = build(prov, "generate", "gemini-2.5-flash", True, GEN)
    assert url == ("https://europe-west4-aiplatform.googleapis.com/v1/projects/acme-prod/locations/europe-west4"
                   "/publishers/google/models/gemini-2.5-flash:streamGenerateContent?alt=sse")
    assert headers["authorization"] == "Bearer ya29.token" and "model" not in body


def test_vertex_anthropic_uses_raw_predict_with_vertex_anthropic_version_and_no_model_in_body() -> None:
    prov = one(Provider(name="v", kind="vertex_anthropic", base_url="https://us-east5-aiplatform.googleapis.com",
                        credential="env:VTX", options={"project": "acme", "location": "us-east5"}))
    prefix = "https://us-east5-aiplatform.googleapis.com/v1/projects/acme/locations/us-east5/publishers/anthropic/models/"
    url, headers, body = build(prov, "messages", "claude-sonnet-4@20250514", False, MSG,
                               {"anthropic-beta": "context-1m-2025-08-07", "anthropic-version": "2023-06-01"})
    assert url == prefix + "claude-sonnet-4@20250514:rawPredict"
    assert body["anthropic_version"] == "vertex-2023-10-16" and "model" not in body
    assert headers["anthropic-beta"] == "context-1m-2025-08-07" and "anthropic-version" not in headers
    url, _, body = build(prov, "messages", "claude-sonnet-4@20250514", True, {**MSG, "stream": True})
    assert url == prefix + "claude-sonnet-4@20250514:streamRawPredict" and body["stream"] is True
    url, _, body = build(prov, "count_tokens", "claude-sonnet-4@20250514", False, MSG)
    assert url == prefix + "count-tokens:rawPredict" and body["model"] == "claude-sonnet-4@20250514"


def test_vertex_without_project_is_unavailable_not_a_broken_url() -> None:
    # the control plane refuses it; a snapshot from an older control plane still must not build bad URLs
    doc = PolicyDocument(providers=[Provider(name="v", kind="vertex_gemini", base_url="https://x", credential="env:VTX",
                                             options={"project": "p", "location": "us-central1"})])
    snap = compile_snapshot(doc, [], version=1, now_ms=0)
    del snap.providers[0].options["project"]
    policy = CompiledPolicy.from_snapshot(snap, adapters=default_providers(), credentials=lambda ref: "token")
    assert "options.project" in policy.providers["v"].unavailable


# ---- OpenAI-compatible and Mistral --------------------------------------------------------------------

def test_mistral_never_sends_stream_options_and_compatible_servers_can_opt_out() -> None:
    mis = one(Provider(name="m", kind="mistral", base_url="https://api.mistral.ai/v1", credential="env:MIS"))
    url, headers, body = build(mis, "chat", "mistral-large-latest", True, CHAT)
    assert url == "https://api.mistral.ai/v1/chat/completions" and headers["authorization"] == "Bearer mis-secret"
    assert "stream_options" not in body
    vllm = one(Provider(name="vllm", kind="openai_compatible", base_url="http://gpu:8000/v1"))
    assert build(vllm, "chat", "llama", True, CHAT)[2]["stream_options"] == {"include_usage": True}
    old = one(Provider(name="old", kind="openai_compatible", base_url="http://gpu:8000/v1", options={"stream_usage": "omit"}))
    assert "stream_options" not in build(old, "chat", "llama", True, CHAT)[2]
    assert "authorization" not in build(vllm, "chat", "llama", True, CHAT)[1]
    responses = {"model": "x", "input": "hi", "stream": True}
    prov = one(Provider(name="oa", kind="openai", base_url="https://api.openai.com/v1", credential="env:MIS"))
    body = dict(responses)
    assert prov.adapter.prepare_body(body, "gpt-5", True, "responses") is False
    assert "stream_options" not in body  # the Responses API rejects it and always reports usage


# ---- Bedrock ------------------------------------------------------------------------------------------

def test_sigv4_signer_matches_aws_published_test_vectors() -> None:
    from dataplane.providers.sigv4 import AwsCredentials, SigV4Signer

    creds = AwsCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    # aws-sig-v4-test-suite: get-vanilla and post-vanilla (service "service", us-east-1)
    s = SigV4Signer(creds, "us-east-1", "service", clock=lambda: NOW)
    get = dict(s.sign("GET", "https://example.amazonaws.com/", [], b""))
    assert get["X-Amz-Date"] == "20150830T123600Z"
    assert get["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
        "SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31")
    post = dict(s.sign("POST", "https://example.amazonaws.com/", [], b""))
    assert post["Authorization"].endswith("Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b")
    # The IAM ListUsers example of the SigV4 documentation (query string + signed content-type)
    iam = SigV4Signer(creds, "us-east-1", "iam", clock=lambda: NOW)
    signed = dict(iam.sign("GET", "https://iam.amazonaws.com/?Action=ListUsers&Version=2010-05-08",
                           [("content-type", "application/x-www-form-urlencoded; charset=utf-8")], b""))
    assert signed["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, "
        "SignedHeaders=content-type;host;x-amz-date, Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7")


def test_bedrock_invoke_signs_the_final_body_and_moves_model_stream_and_betas() -> None:
    prov = one(Provider(name="b", kind="bedrock_anthropic", base_url="https://bedrock-runtime.us-west-2.amazonaws.com",
                        credential="env:AWS", options={"region": "us-west-2"}))
    model = "us.anthropic.claude-sonnet-4-20250514-v1:0"
    body = {**MSG, "stream": True}
    prov.adapter.prepare_body(body, model, True)
    url, headers, payload = prov.adapter.build_request(prov, "messages", model, True, body,
                                                       {"anthropic-beta": "a-1, b-2"})
    assert url == ("https://bedrock-runtime.us-west-2.amazonaws.com/model/"
                   "us.anthropic.claude-sonnet-4-20250514-v1%3A0/invoke-with-response-stream")
    sent = orjson.loads(payload)
    assert sent["anthropic_version"] == "bedrock-2023-05-31" and sent["anthropic_beta"] == ["a-1", "b-2"]
    assert "model" not in sent and "stream" not in sent
    h = dict(headers)
    assert h["X-Amz-Date"] == "20150830T123600Z"
    assert h["Authorization"].startswith(
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-west-2/bedrock/aws4_request, "
        "SignedHeaders=content-type;host;x-amz-date, Signature=")
    # the signature covers the body: other bytes, other signature
    _, headers2, _ = prov.adapter.build_request(prov, "messages", model, True, {**sent, "max_tokens": 17}, {})
    assert dict(headers2)["Authorization"] != h["Authorization"]
    assert not prov.adapter.build_request(prov, "messages", model, False, dict(sent), {})[0].endswith("stream")


def test_bedrock_session_token_json_credentials_and_api_key_auth() -> None:
    prov = one(Provider(name="b", kind="bedrock", base_url="https://bedrock-runtime.eu-central-1.amazonaws.com",
                        credential="env:AWS_JSON", options={"region": "eu-central-1"}))
    url, headers, _ = build(prov, "chat", "mistral.mistral-large-2402-v1:0", True, {"messages": []})
    assert url.endswith("/model/mistral.mistral-large-2402-v1%3A0/converse-stream")
    assert headers["x-amz-security-token"] == "tok/en="
    assert "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token" in headers["authorization"]
    key = one(Provider(name="k", kind="bedrock", base_url="https://bedrock-runtime.eu-central-1.amazonaws.com",
                       credential="env:BRK", options={"auth": "api_key"}))
    url, headers, _ = build(key, "messages", "m", False, {"messages": []})
    assert url.endswith("/model/m/converse") and headers["authorization"] == "Bearer bedrock-api-key"
    assert "x-amz-date" not in headers


@pytest.mark.parametrize("cred, options, problem", [
    ("env:AZ", {"region": "us-east-1"}, "access key id and a secret"),  # "az-secret" is not AKID:SECRET
    ("env:AWS", {"region": "Mars"}, "options.region"),
    ("env:AWS", {"region": "us-east-1", "auth": "iam"}, "auth must be"),
])
def test_bedrock_unusable_configuration_is_reported_without_the_secret(cred: str, options: dict[str, str],
                                                                       problem: str) -> None:
    prov = one(Provider(name="b", kind="bedrock", base_url="https://x", credential=cred, options=options))
    assert problem in prov.unavailable
    assert "az-secret" not in prov.unavailable and "EXAMPLEKEY" not in prov.unavailable


def test_bedrock_signer_never_shows_its_secret() -> None:
    prov = one(Provider(name="b", kind="bedrock", base_url="https://x", credential="env:AWS", options={"region": "us-east-1"}))
    assert "EXAMPLEKEY" not in repr(prov) and "EXAMPLEKEY" not in repr(prov.adapter)


# ---- AWS event-stream decoding ------------------------------------------------------------------------

def _chunk(event: dict[str, Any]) -> bytes:
    payload = orjson.dumps({"bytes": base64.b64encode(orjson.dumps(event)).decode()})
    return encode_message({":message-type": "event", ":event-type": "chunk", ":content-type": "application/json"}, payload)


def test_invoke_stream_is_unwrapped_into_anthropic_sse_across_arbitrary_splits() -> None:
    events: list[dict[str, Any]] = [{"type": "message_start", "message": {"usage": {"input_tokens": 5}}},
              {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hé"}},
              {"type": "message_stop"}]
    wire = b"".join(_chunk(e) for e in events)
    for split in (1, 7, len(wire)):
        dec = EventStreamToSSE(unwrap_chunks=True)
        out = b"".join(dec.feed(wire[i:i + split]) for i in range(0, len(wire), split))
        assert out == b"".join(b"event: %s\ndata: %s\n\n" % (e["type"].encode(), orjson.dumps(e)) for e in events)


def test_converse_events_keep_their_names_and_exceptions_become_an_error_event() -> None:
    dec = EventStreamToSSE(unwrap_chunks=False)
    delta = orjson.dumps({"contentBlockIndex": 0, "delta": {"text": "hi"}})
    out = dec.feed(encode_message({":message-type": "event", ":event-type": "contentBlockDelta"}, delta))
    assert out == b"event: contentBlockDelta\ndata: " + delta + b"\n\n"
    err = encode_message({":message-type": "exception", ":exception-type": "throttlingException"},
                         b'{"message":"Too many requests"}')
    out = dec.feed(err + encode_message({":message-type": "event", ":event-type": "messageStop"}, b"{}"))
    assert out.startswith(b"event: error\n") and b"rate_limit_error" in out and b"Too many requests" in out
    assert b"messageStop" not in out and dec.feed(b"more") == b""


def test_corrupt_event_stream_frame_becomes_an_error_not_garbage() -> None:
    frame = bytearray(encode_message({":message-type": "event", ":event-type": "x"}, b'{"a":1}'))
    frame[-6] ^= 0xFF  # payload byte flipped: the message CRC no longer matches
    out = EventStreamToSSE(unwrap_chunks=False).feed(bytes(frame))
    assert out.startswith(b"event: error\n") and b"corrupt" in out


def test_cloud_error_bodies_become_their_dialects_error_shape() -> None:
    brk = one(Provider(name="b", kind="bedrock_anthropic", base_url="https://x", credential="env:AWS",
                       options={"region": "us-east-1"}))
    out = orjson.loads(brk.adapter.error_payload(429, b'{"message":"Too many tokens, please wait."}') or b"")
    assert out == {"type": "error", "error": {"type": "rate_limit_error", "message": "Bedrock: Too many tokens, please wait."}}
    vtx = one(Provider(name="v", kind="vertex_anthropic", base_url="https://x", credential="env:VTX",
                       options={"project": "p", "location": "us-east5"}))
    google = b'{"error": {"code": 403, "message": "Permission denied on resource project p.", "status": "PERMISSION_DENIED"}}'
    out = orjson.loads(vtx.adapter.error_payload(403, google) or b"")
    assert out["error"] == {"type": "permission_error", "message": "Vertex AI: Permission denied on resource project p."}
    own = b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'
    assert vtx.adapter.error_payload(529, own) is None  # already Anthropic's
    oa = one(Provider(name="o", kind="openai", base_url="https://x", credential="env:MIS"))
    assert oa.adapter.error_payload(500, b"{}") is None
