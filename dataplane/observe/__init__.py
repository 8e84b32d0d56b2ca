"""What a data-plane node tells operators: Prometheus metrics, the access log (and, later, traces).

Called from a few lines of the proxy and the node; all per-request work is in RequestObserver.done().
"""
