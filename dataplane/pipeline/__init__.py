"""The request pipeline: explicit stages over one per-request context (see stages.py)."""
