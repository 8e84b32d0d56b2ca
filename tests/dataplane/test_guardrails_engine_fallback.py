"""Without google-re2 the guardrails still work (Python re), but loudly: a startup warning and a metric."""

from __future__ import annotations

import logging
from pathlib import Path

import aiohttp
import orjson
import pytest

from controlplane.policy.guardrails import Guardrail
from dataplane.guardrails import engine
from tests.fixtures.gateway import gateway_policy, running_gateway

AWS_ID = "AKIAQ7ZL3XK5PW2MN4RT"


@pytest.mark.parametrize("re2_installed", [True, False])
async def test_missing_re2_is_loud_and_guardrails_still_redact(fake_provider, tmp_path: Path, re2_installed: bool,  # type: ignore[no-untyped-def]
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    assert engine.linear_engine()  # the test environment has google-re2: the False case removes it
    if not re2_installed:
        monkeypatch.setattr(engine, "_re2", None)
    doc = gateway_policy(fake_provider.base_url).model_copy(update={"guardrails": [
        Guardrail(id="no-secrets", detect=["secrets"], action="redact")]})
    body = orjson.dumps({"model": "gpt-t", "messages": [{"role": "user", "content": f"deploy {AWS_ID}"}]})
    with caplog.at_level(logging.WARNING):
        async with running_gateway(fake_provider.base_url, tmp_path, policy=doc) as gw, aiohttp.ClientSession() as s:
            policy = gw.node.holder.policy
            assert policy is not None
            assert policy.guardrails.guardrails[0].scanner.engine == ("re2" if re2_installed else "re")
            r = await s.post(gw.url + "/v1/chat/completions", data=body, headers={"authorization": f"Bearer {gw.key}"})
            assert r.status == 200, await r.text()
            metrics = await (await s.get(gw.url + "/metrics")).text()
    seen = orjson.dumps(fake_provider.last_request).decode()
    assert AWS_ID not in seen and "[REDACTED:aws-access-key-id]" in seen  # same results with either engine
    assert f"interlock_guardrail_engine_fallback {0 if re2_installed else 1}" in metrics
    warned = [r for r in caplog.records if "google-re2 is not installed" in r.getMessage()]
    if re2_installed:
        assert not warned
    else:
        assert len(warned) == 1 and warned[0].levelno == logging.WARNING
        assert "pip install google-re2" in warned[0].getMessage()
