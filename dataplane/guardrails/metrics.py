"""Guardrail outcome counters of this node, in the Prometheus text format (appended to GET /metrics)."""

from __future__ import annotations

from collections import Counter


def _label(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class GuardrailCounters:
    def __init__(self, *, fallback_engine: bool = False) -> None:
        self.fallback_engine = fallback_engine  # scanning with Python re (google-re2 missing): slow, alert on it
        self.outcomes: Counter[tuple[str, str, str]] = Counter()  # (guardrail, direction, action) -> outcomes
        self.findings: Counter[tuple[str, str, str]] = Counter()  # (guardrail, direction, rule) -> findings
        self.cache: Counter[str] = Counter()  # input strings answered by the scan cache ("hit") or scanned ("miss")

    def count(self, guardrail: str, direction: str, action: str, rules: Counter[str]) -> None:
        self.outcomes[(guardrail, direction, action)] += 1
        for rule, n in rules.items():
            self.findings[(guardrail, direction, rule)] += n

    def render(self) -> bytes:
        out = ["# HELP interlock_guardrail_outcomes_total Requests where a guardrail found something (or failed), "
               "by the action taken.", "# TYPE interlock_guardrail_outcomes_total counter"]
        out += [f'interlock_guardrail_outcomes_total{{guardrail="{_label(g)}",direction="{d}",action="{a}"}} {n}'
                for (g, d, a), n in sorted(self.outcomes.items())]
        out += ["# HELP interlock_guardrail_findings_total Findings per detection rule (never the matched text).",
                "# TYPE interlock_guardrail_findings_total counter"]
        out += [f'interlock_guardrail_findings_total{{guardrail="{_label(g)}",direction="{d}",rule="{_label(r)}"}} {n}'
                for (g, d, r), n in sorted(self.findings.items())]
        out += ["# HELP interlock_guardrail_scan_cache_total Input strings of 256+ characters in bodies of 8 KB+ "
                "answered from the scan cache (hit) or scanned (miss).", "# TYPE interlock_guardrail_scan_cache_total counter"]
        out += [f'interlock_guardrail_scan_cache_total{{result="{r}"}} {self.cache[r]}' for r in ("hit", "miss")]
        out += ["# HELP interlock_guardrail_engine_fallback 1 when google-re2 is missing and guardrails scan with "
                "Python's re (50-300x slower), else 0.", "# TYPE interlock_guardrail_engine_fallback gauge",
                f"interlock_guardrail_engine_fallback {int(self.fallback_engine)}"]
        return ("\n".join(out) + "\n").encode()
