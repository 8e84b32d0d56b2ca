"""Recall / false-positive evaluation of a Scanner over request bodies (used by the corpus test and benchmark)."""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Iterable
from typing import Any

import orjson

from dataplane.guardrails.engine import Scanner
from dataplane.guardrails.walk import TextIndex


def redacted(scanner: Scanner, body: dict[str, Any]) -> tuple[str, int]:
    """The body as the provider would receive it after `redact`, and the number of findings."""
    b = copy.deepcopy(body)
    index = TextIndex(b)
    findings = scanner.scan(index.text)
    if findings:
        index.apply(findings)
    return orjson.dumps(b).decode(), len(findings)


def evaluate(scanner: Scanner, secrets: Iterable[Any], benign: Iterable[Any]) -> dict[str, Any]:
    """recall per type (the secret no longer in the redacted body), false positives per benign shape."""
    hit: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for s in secrets:
        total[s.kind] += 1
        out, _ = redacted(scanner, s.body)
        if s.secret not in out:
            hit[s.kind] += 1
    fp: Counter[str] = Counter()
    seen: Counter[str] = Counter()
    fp_rules: Counter[str] = Counter()
    for s in benign:
        seen[s.kind] += 1
        index = TextIndex(copy.deepcopy(s.body))
        findings = scanner.scan(index.text)
        if findings:
            fp[s.kind] += 1
            fp_rules.update(f.rule for f in findings)
    return {"hit": hit, "total": total, "fp": fp, "seen": seen, "fp_rules": fp_rules}
