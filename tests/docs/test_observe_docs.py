"""The policy examples in docs/alerts.md and docs/loop-breaker.md are valid policy (documented = tested)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from controlplane.policy.model import PolicyDocument

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _yaml_blocks(name: str) -> list[dict]:  # type: ignore[type-arg]
    text = (DOCS / name).read_text()
    return [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", text, re.S)]


def test_doc_examples_are_valid_policy() -> None:
    alerts = _yaml_blocks("alerts.md")
    loops = _yaml_blocks("loop-breaker.md")
    assert alerts and loops
    for block in alerts + loops:
        doc = PolicyDocument.model_validate(block)
        assert doc.destinations or doc.loop_breakers
    d = PolicyDocument.model_validate(alerts[0])
    assert {x.kind for x in d.destinations} == {"webhook", "slack", "pagerduty"}
    assert d.budgets[0].alert_thresholds == [50, 80, 95, 100]
