"""Prometheus text exposition shared by every process (data plane, control plane, ingest)."""
