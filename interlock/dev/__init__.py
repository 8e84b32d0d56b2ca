"""`interlock dev`: the whole gateway in one process (stack) and its data directory (setup)."""
