"""Alerts the control plane delivers: budget thresholds and operational events, to webhooks, Slack and
PagerDuty, at least once, decided once across replicas by a create-if-absent transaction in the store."""
