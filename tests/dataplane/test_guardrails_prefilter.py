"""The Hyperscan pre-check may say yes where RE2 would not (RE2 then finds nothing), never no where RE2 says yes:
checked text by text against RE2's own pre-check over the labelled corpus (every secret and every benign
request, PII rules included), non-ASCII and non-UTF-8 text, and custom rules Hyperscan has no syntax for."""

from __future__ import annotations

import pytest

from dataplane.guardrails import prefilter
from dataplane.guardrails.catalog import expand
from dataplane.guardrails.engine import Scanner
from dataplane.guardrails.rules import Rule
from dataplane.guardrails.scancache import scan_index
from dataplane.guardrails.walk import TextIndex
from tests.fixtures.requires import missing_service
from tests.guardrail_corpus import benign_samples, secret_samples


@pytest.fixture(scope="module", autouse=True)
def _hyperscan() -> None:
    if not prefilter.available():
        missing_service("hyperscan (pip install hyperscan; x86-64 wheels)")


def _re2_only(rules: list[Rule]) -> Scanner:
    """The same rules with RE2's pre-check (what the node uses without Hyperscan)."""
    sc = Scanner(rules, precheck="re2")
    assert sc.precheck == "re2"
    return sc


def test_never_misses_what_re2_finds_over_the_whole_corpus() -> None:
    rules = expand(["secrets", "pii"])
    fast, slow = Scanner(rules), _re2_only(rules)
    assert fast.precheck == "hyperscan"
    texts = [TextIndex(s.body).text for s in secret_samples()] + [TextIndex(b.body).text for b in benign_samples()]
    wider = 0
    for t in texts:
        raw = t.encode("utf-8", "surrogatepass")
        want = slow.maybe(raw)
        got = fast.maybe(raw)
        assert got or not want, t[:200]
        wider += got and not want
    skipped = sum(not fast.maybe(t.encode("utf-8", "surrogatepass")) for t in texts[-3000:])
    assert skipped > 1500, "the pre-check must still skip most clean requests"
    assert wider < len(texts) * 0.05  # widened constructs stay rare: each extra yes costs a full RE2 scan


@pytest.mark.parametrize("text", [
    "ключ AKIAIOSFODNN7EXAMPLQ конец",  # non-ASCII around a candidate
    "password = ✓✓✓✓✓✓✓✓9✓",  # a counted repeat over multibyte characters: counts characters, as RE2 does
    "token: 日本語日本語日本語7日",
    "ghp_" + "a1B2" * 9,
    "ſecret_key = Zq8#wL2!pX9v",  # Unicode case folding (long s -> s), as RE2's (?i) does
    "api_\u212aEY: 7Gh$2kLm9Qw!",  # the Kelvin sign folds to k
])
def test_multibyte_and_case_folded_candidates_are_not_skipped(text: str) -> None:
    rules = expand(["secrets", "pii"])
    fast, slow = Scanner(rules), _re2_only(rules)
    raw = text.encode()
    assert slow.maybe(raw), "each case is a candidate for RE2"
    assert fast.maybe(raw)


def test_text_that_is_not_utf8_is_checked_by_re2_and_still_found() -> None:
    sc = Scanner(expand(["secrets"]))
    text = "lone \ud800 surrogate then ghp_" + "a1B2c3D4e5F6" * 3
    index = TextIndex({"messages": [{"role": "user", "content": text}]})
    found = scan_index(sc, None, index)
    assert [f.rule for f in found] == ["github-pat"]


def test_a_custom_rule_hyperscan_refuses_is_checked_by_re2() -> None:
    refused = r"(?P<s>internal-{0}id-[0-9]{6})"  # RE2 accepts `-{0}` (matches nothing), Hyperscan has no syntax
    assert not prefilter.compiles(refused.replace("(?P<s>", "(?:"))
    sc = Scanner([*expand(["secrets"]), Rule("custom:internal", "custom", refused)])
    assert sc.precheck == "hyperscan"
    assert sc.maybe(b"see internalid-123456 here")
    assert [f.rule for f in sc.scan("see internalid-123456 here")] == ["custom:internal"]
    assert not sc.maybe(b"nothing to see")
