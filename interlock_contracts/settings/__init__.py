"""Typed, frozen settings per service, read from the environment (secrets from *_FILE, never in repr).

Shared reading rules in common.py; one module per service. The CLI's and dev mode's own settings live with the shell (interlock/cli/settings.py, interlock/dev/settings.py)."""
