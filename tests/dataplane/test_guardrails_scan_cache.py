"""The input scan's speed-ups keep its answers: the per-string cache (scancache), the RE2 Set that names a
candidate's rule, and the separator no built-in rule matches across. Checked against the plain scan of the
whole walked text (Scanner.scan), which is what the corpus recall/false-positive figures measure."""

from __future__ import annotations

import copy
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from dataplane.dialects.client_errors import GatewayError
from dataplane.dialects.registry import default_dialects
from dataplane.guardrails.catalog import expand
from dataplane.guardrails.compiled import GuardrailSet
from dataplane.guardrails.engine import Scanner, linear_engine
from dataplane.guardrails.scancache import MIN_CHARS, SMALL_BODY, ScanCache, scan_index
from dataplane.guardrails.walk import TextIndex
from dataplane.http.messages import Request
from dataplane.pipeline.context import RequestContext
from dataplane.pipeline.endpoint import Endpoint
from dataplane.pipeline.guardrail_stage import Guardrails
from dataplane.usage.event import EventIds, RequestRecord
from interlock_contracts.v1 import policy_pb2
from tests.fixtures.requires import missing_service
from tests.guardrail_corpus import benign_samples, secret_samples

SECRET = "AKIAQ7ZL3XK5PW2MN4RT"


def _conversation(turns: int) -> list[dict[str, Any]]:
    """A Claude Code-shaped conversation: benign tool results with a true secret every few turns."""
    secrets, benign = secret_samples(), benign_samples()
    msgs: list[dict[str, Any]] = []
    for t in range(turns):
        s = secrets[t * 37 % len(secrets)] if t % 3 == 0 else benign[t * 53 % len(benign)]
        msgs.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": f"t{t}",
                                                  "content": orjson.dumps(s.body).decode()}]})
        msgs.append({"role": "assistant", "content": [{"type": "text", "text": f"turn {t}: looked at it"}]})
    return msgs


def test_cached_scan_equals_the_plain_scan_turn_after_turn() -> None:
    """Each turn resends the conversation: same findings (offsets included) as scanning it all, cold or warm."""
    scanner, cache = Scanner(expand(["secrets", "pii"])), ScanCache()
    msgs = _conversation(40)
    total = 0
    for n in range(2, len(msgs) + 1, 2):
        index = TextIndex({"model": "m", "messages": copy.deepcopy(msgs[:n])})
        want = sorted(scanner.scan(index.text), key=lambda f: f.start)
        assert scan_index(scanner, cache, index) == want
        total += len(want)
    assert total > 20 and cache.hits > 100  # secrets were found, and later turns were answered from the cache
    # a second pass over every turn, all warm now: still the same answers
    for n in range(2, len(msgs) + 1, 6):
        index = TextIndex({"messages": copy.deepcopy(msgs[:n])})
        assert scan_index(scanner, cache, index) == sorted(scanner.scan(index.text), key=lambda f: f.start)


def test_the_cache_holds_digests_and_offsets_never_text() -> None:
    scanner, cache = Scanner(expand(["secrets"])), ScanCache()
    text = "x" * SMALL_BODY + f"\nAWS_ACCESS_KEY_ID={SECRET}\n"
    index = TextIndex({"messages": [{"role": "user", "content": text}]})
    found = scan_index(scanner, cache, index)
    assert [index.text[f.start:f.end] for f in found] == [SECRET]
    entries = list(cache._entries.items())
    assert len(entries) == 1
    key, value = entries[0]
    assert isinstance(key, int | bytes) and SECRET not in repr(key)  # a hash
    assert value == (("aws-access-key-id", text.index(SECRET), text.index(SECRET) + len(SECRET)),)
    assert SECRET not in repr(entries)


def test_short_strings_and_small_bodies_are_scanned_every_time_not_cached() -> None:
    scanner, cache = Scanner(expand(["secrets"])), ScanCache()
    long = "y" * SMALL_BODY
    index = TextIndex({"messages": [{"role": "user", "content": f"key {SECRET}"}, {"role": "user", "content": long}]})
    for _ in range(2):
        found = scan_index(scanner, cache, index)
        assert [(f.rule, index.text[f.start:f.end]) for f in found] == [("aws-access-key-id", SECRET)]
    assert len(cache) == 1 and cache.hits == 1  # only the long string, clean
    small = TextIndex({"messages": [{"role": "user", "content": "z" * MIN_CHARS + f" key {SECRET}"}]})
    small_cache = ScanCache()
    assert [f.rule for f in scan_index(scanner, small_cache, small)] == ["aws-access-key-id"]
    assert len(small_cache) == 0  # a small body is one DFA pass: not worth hashing


def test_the_cache_is_bounded_in_bytes_and_keeps_the_recently_used() -> None:
    cache = ScanCache(max_bytes=10_000)
    cache.put(b"first", ())
    for i in range(1000):
        cache.put(i.to_bytes(32, "big"), (("r", 0, 1),) if i % 2 else ())
        assert cache.get(b"first") == ()  # used every time: never the one evicted
        assert cache.used_bytes <= 10_000
    assert 20 <= len(cache) <= 60
    assert cache.get((0).to_bytes(32, "big")) is None  # the oldest went first


def test_a_custom_match_across_two_strings_is_kept_and_not_cached() -> None:
    scanner, cache = Scanner([*expand(["secrets"]), _custom(r"alpha[\s\S]{0,9}omega")]), ScanCache()
    body = {"messages": [{"role": "user", "content": "x" * SMALL_BODY + " alpha"},
                         {"role": "user", "content": "omega " + "y" * SMALL_BODY}]}
    index = TextIndex(body)
    want = scanner.scan(index.text)
    assert [f.rule for f in want] == ["custom:span"]
    assert scan_index(scanner, cache, index) == want
    assert len(cache) == 0


def test_no_built_in_rule_matches_across_two_strings() -> None:
    """The separator ends every match: a PEM header at the end of one string and key text in the next one are
    not a private key (each string is judged on its own, as the cache assumes)."""
    scanner = Scanner(expand(["secrets", "pii"]))
    a = "-----BEGIN RSA PRIVATE KEY-----"
    b = "MIIEowIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM9Oi" * 3 + "\n-----END RSA PRIVATE KEY-----"
    assert [f.rule for f in scanner.scan(a + "\n" + b)] == ["private-key"]
    assert scanner.scan(TextIndex({"messages": [{"content": a}, {"content": b}]}).text) == []
    assert scanner.scan(TextIndex({"x": [{"password": ""}, {"content": "= Zq8#rT2!vLx9@Wm"}]}).text) == []


@pytest.mark.parametrize("text", [
    SECRET, f"{SECRET} tail", f"head {SECRET}", f"head {SECRET} tail", f"x{SECRET} tail", f"head {SECRET}x",
    f"é {SECRET} ü", f"{SECRET}\nghp_{'a1B2' * 9}", f"ghp_{'a1B2' * 9} {SECRET}",
])
def test_the_rule_named_by_the_set_is_the_one_the_grouped_pattern_names(text: str) -> None:
    """Candidates at the very start/end of the text (grouped pattern) and inside it (Set with one byte of context
    each side) get the same rule and \\b sees the real neighbours: same findings as the Python re engine."""
    if not linear_engine():  # google-re2 is a runtime dependency; without it the Set path does not exist
        missing_service("google-re2 is not installed")
    rules = expand(["secrets", "pii"])
    fast, slow = Scanner(rules, engine="re2"), Scanner(rules, engine="re")
    assert fast.scan(text) == slow.scan(text)
    if f"x{SECRET}" in text or f"{SECRET}x" in text:
        assert "aws-access-key-id" not in [f.rule for f in fast.scan(text)]
    else:
        assert "aws-access-key-id" in [f.rule for f in fast.scan(text)]


def _custom(regex: str) -> Any:
    from dataplane.guardrails.rules import Rule

    return Rule("custom:span", "custom", f"(?P<s>{regex})")


# -- through the input stage, across snapshots

def _snapshot(**guardrail: Any) -> GuardrailSet:
    g = policy_pb2.Guardrail(id="g", direction="input", **guardrail)
    return GuardrailSet.from_snapshot(policy_pb2.PolicySnapshot(guardrails=[g]))


def _ctx(gset: GuardrailSet, body: dict[str, Any]) -> RequestContext:
    raw = orjson.dumps(body)
    ctx = RequestContext(Request("POST", "/v1/messages", "", {}, raw, False), None,  # type: ignore[arg-type]
                         Endpoint(default_dialects()["anthropic"], "messages", "/v1/messages"),
                         RequestRecord(EventIds(), "anthropic", "/v1/messages", 0))
    ctx.policy = SimpleNamespace(guardrails=gset)  # type: ignore[assignment]
    ctx.key = SimpleNamespace(id="k", team_id="t", project_id="")  # type: ignore[assignment]
    ctx.body = orjson.loads(raw)
    return ctx


def _tool_result(text: str) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "t", "content": "log line\n" * (SMALL_BODY // 8) + text}]}]}


def test_a_new_snapshot_never_reuses_an_answer_from_the_old_one() -> None:
    stage = Guardrails()
    body = _tool_result("connecting to build-farm-7.corp.internal\n")
    old = _snapshot(detectors=["secrets"], action="block")
    for _ in range(2):  # clean, then clean again from the cache
        ctx = _ctx(old, body)
        stage.check_input(ctx)
        assert ctx.rec.guardrails == []
    assert old.guardrails[0].cache is not None and old.guardrails[0].cache.hits >= 1
    # the policy now names that host: the same text, already seen clean, must be blocked
    new = _snapshot(detectors=["secrets"], action="block",
                    custom=[policy_pb2.GuardrailPattern(id="host", keywords=["build-farm-7.corp.internal"])])
    assert new.guardrails[0].cache is not old.guardrails[0].cache
    with pytest.raises(GatewayError) as err:
        stage.check_input(_ctx(new, body))
    assert "custom:host" in str(err.value) and "build-farm-7" not in str(err.value)


def test_the_action_comes_from_the_current_policy_and_repeats_are_answered_the_same() -> None:
    stage = Guardrails()
    body = _tool_result(f"AWS_ACCESS_KEY_ID={SECRET}\n")
    audit = _snapshot(detectors=["secrets"], action="audit")
    for _ in range(2):
        ctx = _ctx(audit, body)
        stage.check_input(ctx)
        assert [(g["action"], g["rules"]) for g in ctx.rec.guardrails] == [("audit", {"aws-access-key-id": 1})]
        assert SECRET.encode() in ctx.req.body
    redact = _snapshot(detectors=["secrets"], action="redact")
    for _ in range(2):  # the second time from the cache: same redaction, provider never gets the key
        ctx = _ctx(redact, body)
        stage.check_input(ctx)
        assert SECRET.encode() not in ctx.req.body and b"[REDACTED:aws-access-key-id]" in ctx.req.body
    assert redact.guardrails[0].cache is not None and redact.guardrails[0].cache.hits >= 1
    metrics = stage.counters.render().decode()  # 4 requests, one 8 KB+ string each: scanned twice, then hits
    assert 'interlock_guardrail_scan_cache_total{result="hit"} 2' in metrics
    assert 'interlock_guardrail_scan_cache_total{result="miss"} 2' in metrics


@pytest.mark.parametrize("text", [f"head {SECRET} tail", SECRET, f"{SECRET} tail", f"head {SECRET}"])
def test_two_rules_matching_the_same_span_the_first_declared_wins(text: str) -> None:
    """A custom keyword equal to a key: both rules match exactly that span; the catalog order decides, in the
    Set path (inside the text) as in the grouped one (at its edges)."""
    from dataplane.guardrails.rules import Rule

    kw = Rule("custom:kw", "custom", rf"(?i)\b(?P<s>{SECRET})\b")
    builtin = expand(["secrets"])
    assert [f.rule for f in Scanner([*builtin, kw]).scan(text)] == ["aws-access-key-id"]
    assert [f.rule for f in Scanner([kw, *builtin]).scan(text)] == ["custom:kw"]
