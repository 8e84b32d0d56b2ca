"""The data plane's error hierarchy. Foreign exceptions (grpc, OS, protobuf) are
translated into these at the boundary where they occur."""

from __future__ import annotations


class DataPlaneError(Exception):
    """Base for every error the data plane raises on purpose."""


class SnapshotRejected(DataPlaneError):
    """A policy snapshot cannot be applied; `reason` is sent back to the control plane in the Ack."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class SnapshotFileError(DataPlaneError):
    """The snapshot file on disk cannot be read, parsed, verified or written."""
