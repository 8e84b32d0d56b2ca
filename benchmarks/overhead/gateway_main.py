"""Fallback launcher: what `interlock dataplane` does (same settings, node, sink selection, uvloop).

Used only when `interlock dataplane` does not become ready; the harness prints why
and records it in the JSON result, so a broken CLI never silently skews the figures.
It runs under `python -O`, which strips `assert` statements and nothing else (an
earlier dataplane/http/server.py asserted `isinstance(transport, asyncio.Transport)`,
which uvloop transports fail).
"""

from __future__ import annotations

import asyncio
import logging
import os


class _CountingSink:
    def __init__(self) -> None:
        self.emitted = self.written = self.dropped = self.failed_batches = 0

    def emit(self, event: object) -> None:
        self.emitted += 1

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


def main() -> None:
    from dataplane.node import DataPlaneNode
    from interlock.cli.serve_cmds import run_until_signal
    from interlock_contracts.settings.dataplane import DataPlaneSettings

    settings = DataPlaneSettings.from_env()
    try:  # the project's own sink factory when it exists, else an equivalent count-and-forget sink
        from dataplane.usage.sink import make_usage_sink

        sink: object = make_usage_sink(settings)
    except ImportError:
        sink = _CountingSink()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def serve(stop: asyncio.Event) -> None:
        node = DataPlaneNode(settings, sink=sink, env=os.environ)  # type: ignore[arg-type]
        await node.start()
        print(f"interlock data plane {settings.node_id} serving on http://{settings.host}:{node.port}", flush=True)
        await stop.wait()
        await node.stop()

    run_until_signal(serve)


if __name__ == "__main__":
    main()
