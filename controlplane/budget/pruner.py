"""Background removal of ended per-run keys (StorePolicyService.prune_run_keys), owned by the backend."""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress
from typing import Protocol

from ..errors import ControlPlaneError

log = logging.getLogger(__name__)


class Prunes(Protocol):
    async def prune_run_keys(self, *, older_than_ms: int, actor: str = "interlock") -> list[str]: ...


class RunKeyPruner:
    def __init__(self, service: Prunes, *, older_than_s: float, every_s: float = 600.0):
        self._service = service
        self._older_than_ms = int(older_than_s * 1000)
        self._every_s = every_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._every_s)
            try:
                while await self._service.prune_run_keys(older_than_ms=self._older_than_ms):
                    pass  # more than one batch ended: keep going, one commit per batch
            except ControlPlaneError as exc:
                log.warning("pruning ended run keys failed (retried in %.0f s): %s", self._every_s, exc)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
