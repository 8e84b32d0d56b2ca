"""Append-only files that survive kill -9 and power loss: the spool, the WAL, directory fsync."""
