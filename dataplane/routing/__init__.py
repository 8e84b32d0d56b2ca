"""Routing: which deployment serves a request, in which order the others are tried, and when to stop.

Pure modules (tables built at snapshot swap, rule matching, ordering, backoff, failure classes) plus
the per-node circuit-breaker state; the I/O loop that uses them lives in dataplane/pipeline/proxy.py.
"""
