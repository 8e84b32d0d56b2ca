"""gRPC `interlock.v1.BudgetService/Sync` (proto/interlock_contracts/v1/budget.proto) over the ledger.

Store outages become UNAVAILABLE, which data planes treat as "control plane unreachable" and answer with
each limit's offline mode; a Sync that kept losing CAS races becomes ABORTED (retry with the same seq).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

import grpc

from interlock_contracts.v1 import budget_pb2, budget_pb2_grpc

from ..errors import Conflict, StoreUnavailable
from .ledger import Ledger

log = logging.getLogger(__name__)
NODE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
MAX_OPS = 10_000


class BudgetServicer(budget_pb2_grpc.BudgetServiceServicer):
    def __init__(self, ledger: Ledger, clock: Callable[[], float],
                 observe: Callable[[str, float], None] | None = None):
        self._ledger = ledger
        self._clock = clock
        self._observe = observe  # (outcome, seconds) per Sync, for GET /metrics (controlplane/observe.py)

    async def Sync(
        self, request: budget_pb2.LeaseSyncRequest, context: grpc.aio.ServicerContext
    ) -> budget_pb2.LeaseSyncResponse:
        if not NODE_ID_RE.match(request.node_id):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"invalid node_id {request.node_id!r}: use [A-Za-z0-9._:-]")
        if len(request.ops) > MAX_OPS:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"at most {MAX_OPS} ops per Sync")
        self._ledger.maybe_collect()
        started, outcome = time.monotonic(), "ok"
        try:
            grants = await self._ledger.sync(request.node_id, request.seq, request.ops, request.incarnation)
        except StoreUnavailable as exc:
            outcome = "unavailable"
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"budget ledger unavailable: {exc}")
        except Conflict:
            outcome = "contended"
            await context.abort(grpc.StatusCode.ABORTED, "budget ledger contended; retry with the same seq")
        finally:
            if self._observe is not None:
                self._observe(outcome, time.monotonic() - started)
        return budget_pb2.LeaseSyncResponse(
            grants=grants, server_time_unix_ms=int(self._clock() * 1000), lease_ttl_ms=self._ledger.lease_ttl_ms
        )

    def register(self, server: grpc.aio.Server) -> None:
        budget_pb2_grpc.add_BudgetServiceServicer_to_server(self, server)
