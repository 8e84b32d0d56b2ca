"""Attribution tags: header parsing, SDK metadata, agent session ids, precedence."""

from __future__ import annotations

import pytest

from dataplane.dialects.client_errors import GatewayError
from dataplane.pipeline.tags import missing, parse_header, request_tags

SID = "54c1eb09-bc4c-4d2f-98eb-6d2ab2d5e2fe"


def test_header_pairs_and_whitespace() -> None:
    assert parse_header(" agent=claude-code, task=T-123 ,step=edit,") == {"agent": "claude-code", "task": "T-123", "step": "edit"}


@pytest.mark.parametrize("raw", ["agent", "bad key=x", "k=" + "v" * 300, ",".join(f"k{i}=v" for i in range(40))])
def test_malformed_header_is_a_400_that_says_what_to_fix(raw: str) -> None:
    with pytest.raises(GatewayError) as exc:
        parse_header(raw)
    assert exc.value.status == 400 and "x-interlock-tags" in exc.value.message


@pytest.mark.parametrize("user_id", [
    f"user_abc123_account__session_{SID}",  # Claude Code before 2.1.78
    '{"device_id":"d","account_uuid":"","session_id":"' + SID + '"}',  # Claude Code's JSON form
])
def test_claude_code_session_from_metadata(user_id: str) -> None:
    assert request_tags({}, {}, {"metadata": {"user_id": user_id}})["session"] == SID


def test_session_headers_from_claude_code_and_codex() -> None:
    assert request_tags({}, {"x-claude-code-session-id": "cc-1"}, {})["session"] == "cc-1"
    assert request_tags({}, {"session_id": "codex-9"}, {})["session"] == "codex-9"


def test_precedence_defaults_then_metadata_then_header() -> None:
    tags = request_tags(
        {"team": "default", "task": "from-key"},
        {"x-interlock-tags": "task=T-1"},
        {"metadata": {"task": "from-body", "feature": "search", "n": 3}},
    )
    assert tags == {"team": "default", "task": "T-1", "feature": "search"}  # non-string metadata skipped


def test_missing_required_tags() -> None:
    assert missing(frozenset({"task", "agent"}), {"agent": "x", "task": ""}) == ["task"]
