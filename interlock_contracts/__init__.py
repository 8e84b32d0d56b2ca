"""Interlock's contracts: what the planes and the shell agree on (generated protobuf, kinds, budget
windows, key format, snapshot hashing and state, credential rules, metrics text, per-service settings).

Imports no plane and no shell module (enforced by import-linter, see pyproject.toml)."""
