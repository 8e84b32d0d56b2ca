"""Settings are read from the environment in one place, with actionable errors."""

from __future__ import annotations

import pytest

from interlock_contracts.settings.common import SettingsError
from interlock_contracts.settings.controlplane import ControlPlaneSettings
from interlock_contracts.settings.dataplane import DataPlaneSettings


def test_empty_control_plane_means_disk_only_and_unset_means_default() -> None:
    base = {"INTERLOCK_KEY_PEPPER": "p"}
    assert DataPlaneSettings.from_env({**base, "INTERLOCK_CONTROL_PLANE": ""}).control_plane == ""
    assert DataPlaneSettings.from_env(base).control_plane == "127.0.0.1:50051"


def test_missing_secrets_and_bad_numbers_name_the_variable_to_fix(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SettingsError, match="INTERLOCK_KEY_PEPPER"):
        DataPlaneSettings.from_env({})
    with pytest.raises(SettingsError, match="INTERLOCK_ADMIN_TOKEN"):
        ControlPlaneSettings.from_env({"INTERLOCK_KEY_PEPPER": "p"})
    with pytest.raises(SettingsError, match="INTERLOCK_DP_PORT"):
        DataPlaneSettings.from_env({"INTERLOCK_KEY_PEPPER": "p", "INTERLOCK_DP_PORT": "eighty"})
    pepper = tmp_path / "pepper"
    pepper.write_text("from-file\n")
    s = DataPlaneSettings.from_env({"INTERLOCK_KEY_PEPPER_FILE": str(pepper)})
    assert s.key_pepper == b"from-file"
    assert "from-file" not in repr(s)  # secrets never reach logs through repr


def test_kafka_sink_needs_a_bootstrap_and_spools_under_the_state_dir(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from dataplane.usage.kafka import KafkaUsageSink
    from dataplane.usage.sink import make_usage_sink

    base = {"INTERLOCK_KEY_PEPPER": "p", "INTERLOCK_USAGE_SINK": "kafka", "INTERLOCK_DP_STATE_DIR": str(tmp_path)}
    with pytest.raises(SettingsError, match="INTERLOCK_KAFKA_BOOTSTRAP"):
        make_usage_sink(DataPlaneSettings.from_env(base))
    s = DataPlaneSettings.from_env({**base, "INTERLOCK_KAFKA_BOOTSTRAP": "127.0.0.1:9092"})
    assert s.usage_spool_dir == tmp_path / "usage-spool"
    assert isinstance(make_usage_sink(s), KafkaUsageSink)


def test_cli_actor_comes_from_interlock_actor_then_the_os_user() -> None:
    from interlock.cli.settings import CliSettings

    assert CliSettings.from_env({"INTERLOCK_ACTOR": "alice@corp", "USER": "root"}).actor == "alice@corp"
    assert CliSettings.from_env({"USER": "bob"}).actor == "bob"


def test_admin_client_names_the_actor_on_every_request() -> None:
    import httpx

    from interlock.cli.admin_client import AdminClient

    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("x-interlock-actor"))
        return httpx.Response(200, json={"keys": []})

    with AdminClient("http://cp", "tok", actor="alice", transport=httpx.MockTransport(handler)) as api:
        api.list_keys()
    assert seen == ["alice"]
