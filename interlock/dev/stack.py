"""The in-process stack behind `interlock dev`: every component, real protocols between them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace

from controlplane.admin_api import create_admin_app
from controlplane.admin_server import serve_admin
from controlplane.backend import ControlPlaneBackend, start_backend
from controlplane.console import mount_console
from controlplane.usage_api import create_usage_router
from dataplane.node import DataPlaneNode
from dataplane.usage.sink import NullSink, UsageSink
from dataplane.usage.wal_sink import WalClickHouseSink
from ingest.query_service import UsageQueryService
from interlock.dev.settings import DevSettings
from interlock.dev.setup import banner, dev_credential_rules, ensure_policy_and_key, load_secrets
from interlock.fakeprovider.config import FakeProviderConfig
from interlock.fakeprovider.server import start_fake_provider
from interlock_contracts.settings.controlplane import ControlPlaneSettings
from interlock_contracts.settings.dataplane import DataPlaneSettings


def _async(fn: Callable[[], object]) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        fn()

    return run


class DevStack:
    def __init__(self, settings: DevSettings, *, env: Mapping[str, str]):
        self.settings = settings
        self._env = env
        self._stops: list = []
        self.backend: ControlPlaneBackend | None = None
        self.node: DataPlaneNode | None = None
        self.virtual_key = ""
        self._admin_token = ""
        self._models: list[str] = []

    async def start(self) -> None:
        s = self.settings
        data_dir = s.data_dir.resolve()
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        data_dir.chmod(0o700)  # also for data dirs created by earlier versions with 0755
        sec = load_secrets(data_dir)
        self._admin_token = sec.admin_token
        fake_runner, fake_url = await start_fake_provider(
            FakeProviderConfig(api_key=sec.provider_key_path.read_text().strip(), latency_ms=50, chunk_delay_ms=20,
                               admin_token=sec.provider_key_path.read_text().strip()),
            port=s.fake_provider_port,
        )
        self._stops.append(fake_runner.cleanup)
        cp = ControlPlaneSettings(key_pepper=sec.key_pepper, admin_token=sec.admin_token.encode(),
                                  store=f"sqlite:///{data_dir / 'policy.db'}", admin_host=s.host,
                                  admin_port=s.admin_port, grpc_host="127.0.0.1", grpc_port=s.grpc_port,
                                  credentials=dev_credential_rules(data_dir))
        self.backend = await start_backend(cp)
        self._stops.append(self.backend.close)
        self.virtual_key = await ensure_policy_and_key(self.backend.service, data_dir, fake_url, sec, self._env)
        routers = self.backend.admin_routers(cp.key_pepper)  # explain, budgets, keys mint
        queries = None
        if s.with_usage:
            # same chDB path as the usage sink: one engine per process, many clients are fine
            queries = UsageQueryService.from_dsn(f"chdb://{data_dir / 'clickhouse'}")
            self._stops.append(_async(queries.close))
        routers.append(create_usage_router(queries))
        app = create_admin_app(self.backend.service, cp.admin_token, extra_routers=routers)
        mount_console(app, self.backend, queries, cp.key_pepper)
        server, task = await serve_admin(app, s.host, s.admin_port)

        async def stop_admin() -> None:
            server.should_exit = True  # type: ignore[attr-defined]
            await task

        self._stops.append(stop_admin)
        dp = replace(DataPlaneSettings(node_id="dev-node", key_pepper=sec.key_pepper),
                     host=s.host, port=s.port, control_plane=f"127.0.0.1:{self.backend.grpc_port}",
                     state_dir=data_dir / "dataplane", credentials=dev_credential_rules(data_dir))
        # Write-ahead like the Kafka sink: a kill -9 of `interlock dev` loses no usage event.
        sink: UsageSink = (WalClickHouseSink.from_dsn(f"chdb://{data_dir / 'clickhouse'}", dp.usage_spool_dir,
                                                      flush_interval_ms=s.usage_flush_ms)
                           if s.with_usage else NullSink())
        self.node = DataPlaneNode(dp, sink=sink, env=self._env)
        await self.node.start()
        self._stops.append(self.node.stop)
        assert self.node.sync is not None
        snap = await self.backend.service.current_snapshot()
        await self.node.sync.wait_for_version(snap.version, 10.0)
        self._models = sorted(m.name for m in await self.backend.service.list_models())

    def banner(self) -> str:
        s = self.settings
        assert self.node is not None
        return banner(gateway=f"http://{s.host}:{self.node.port}", admin=f"http://{s.host}:{s.admin_port}",
                      admin_token=self._admin_token, vkey=self.virtual_key, data_dir=s.data_dir.resolve(),
                      models=self._models)

    async def stop(self) -> None:
        for stop in reversed(self._stops):
            try:
                await stop()
            except Exception:  # keep stopping the rest
                await asyncio.sleep(0)
        self._stops.clear()
