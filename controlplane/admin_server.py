"""Serve the admin FastAPI app with uvicorn inside the caller's event loop (the control plane and dev mode)."""

from __future__ import annotations

import asyncio
import contextlib


async def serve_admin(app: object, host: str, port: int) -> tuple[object, asyncio.Task[None]]:
    """Run the FastAPI admin app with uvicorn inside the current loop; returns (server, task)."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off"))  # type: ignore[arg-type]
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]  # the caller owns the signals
    task = asyncio.get_running_loop().create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # surfaces "address already in use" and friends
        await asyncio.sleep(0.02)
    return server, task
