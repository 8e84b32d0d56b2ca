"""The control plane's error hierarchy. Foreign exceptions (etcd, sqlite, grpc)
are translated into these once, at the boundary where they occur."""

from __future__ import annotations


class ControlPlaneError(Exception):
    """Base for every error the control plane reports to a caller."""

    status = 500


class NotFound(ControlPlaneError):
    status = 404


class Conflict(ControlPlaneError):
    """A concurrent change won; retry with fresh state."""

    status = 409


class PolicyInvalid(ControlPlaneError):
    """The policy would not compile; `errors` lists every problem, each actionable."""

    status = 422

    def __init__(self, errors: list[str]):
        super().__init__("; ".join(errors))
        self.errors = errors


class StoreUnavailable(ControlPlaneError):
    """The policy store (etcd) cannot be reached."""

    status = 503
