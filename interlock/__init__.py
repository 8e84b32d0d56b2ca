"""Interlock: a governed AI gateway. CLI, embedded dev mode, fake provider and wire contracts."""
