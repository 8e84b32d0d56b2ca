"""Guardrails: secret and personal-data detection on what clients send and what providers answer."""
