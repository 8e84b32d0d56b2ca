"""The policy snapshot on a node: compile, hold, sync from the control plane, deltas, the file on disk."""
