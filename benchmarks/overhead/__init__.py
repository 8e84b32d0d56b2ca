"""Helpers for benchmarks/dataplane_overhead.py: processes, upstream, gateway, load tools, report."""
