"""The detectors against the labelled corpus (tests/guardrail_corpus.py): recall >= 99% overall and >= 95% per
type, false positives <= 0.1% of benign coding-agent requests; plus the validators' edge cases."""

from __future__ import annotations

import pytest

from dataplane.guardrails.catalog import expand
from dataplane.guardrails.engine import Scanner, redact
from dataplane.guardrails.evaluate import evaluate
from dataplane.guardrails.walk import TextIndex
from tests.guardrail_corpus import SECRETS, benign_samples, secret_samples


@pytest.fixture(scope="module")
def scores() -> dict:  # type: ignore[type-arg]
    return evaluate(Scanner(expand(["secrets"])), secret_samples(), benign_samples())


def test_corpus_is_big_and_varied_enough() -> None:
    secrets, benign = secret_samples(), benign_samples()
    assert len(secrets) >= 1000 and len(SECRETS) >= 40 and len(benign) >= 3000
    assert len({s.carrier for s in secrets}) >= 9
    assert secret_samples() == secrets  # deterministic


def test_recall_overall_and_per_type(scores: dict) -> None:  # type: ignore[type-arg]
    hit, total = scores["hit"], scores["total"]
    assert sum(hit.values()) / sum(total.values()) >= 0.99
    low = {k: f"{hit[k]}/{total[k]}" for k in total if hit[k] / total[k] < 0.95}
    assert not low, low


def test_false_positives_on_benign_coding_requests(scores: dict) -> None:  # type: ignore[type-arg]
    fp, seen = sum(scores["fp"].values()), sum(scores["seen"].values())
    assert fp / seen <= 0.001, (dict(scores["fp"]), dict(scores["fp_rules"]))


@pytest.mark.parametrize(("text", "rule"), [
    ("card 4242 4242 4242 4242 on file", "payment-card"),
    ("IBAN GB82 WEST 1234 5698 7654 32", "iban"),
    ("ssn 123-45-6789", "us-ssn"),
    ("mail jane.doe@acme.io now", "email"),
    ("call +1 415-555-0132", "phone"),
    ("from 81.2.69.160 at", "ip-address"),
])
def test_pii_types_with_their_checksums(text: str, rule: str) -> None:
    sc = Scanner(expand([rule]))
    assert [f.rule for f in sc.scan(text)] == [rule]


@pytest.mark.parametrize(("text", "rule"), [
    ("card 4242 4242 4242 4241", "payment-card"),  # Luhn fails
    ("IBAN GB82 WEST 1234 5698 7654 33", "iban"),  # mod-97 fails
    ("ssn 000-45-6789", "us-ssn"),  # never issued
    ("from 127.0.0.1 and 10.0.0.8", "ip-address"),  # loopback / private: not personal data
])
def test_pii_checksum_failures_are_not_findings(text: str, rule: str) -> None:
    assert Scanner(expand([rule])).scan(text) == []


def test_a_rejected_candidate_does_not_hide_a_secret_inside_it() -> None:
    # the generic rule sees `token = hf_...` first (identifier-like value: rejected); the hf_ rule must still fire
    text = "HF_TOKEN=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\n"
    found = Scanner(expand(["secrets"])).scan(text)
    assert [f.rule for f in found] == ["huggingface-token"]
    assert redact(text, found) == "HF_TOKEN=[REDACTED:huggingface-token]\n"


def test_engines_agree() -> None:
    rules = expand(["secrets", "pii"])
    re2, py = Scanner(rules, engine="re2"), Scanner(rules, engine="re")
    for s in secret_samples()[::7]:
        text = TextIndex(s.body).text
        assert re2.scan(text) == py.scan(text)


def test_the_precheck_never_skips_a_secret() -> None:
    """The input stage returns early when the walked text has no candidate (one DFA pass, no validation): that
    must hold for every true secret, and it must skip most clean requests (it is what keeps them cheap)."""
    from dataplane.guardrails.walk import TextIndex

    sc = Scanner(expand(["secrets"]))
    for s in secret_samples():
        assert sc.maybe(TextIndex(s.body).text.encode("utf-8", "surrogatepass")), (s.kind, s.carrier)
    benign = benign_samples()
    skipped = sum(not sc.maybe(TextIndex(b.body).text.encode("utf-8", "surrogatepass")) for b in benign)
    assert skipped / len(benign) > 0.5
