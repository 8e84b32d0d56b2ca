"""The on-disk last good snapshot: hash verification, atomic save, corrupt files never load."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from controlplane.policy import compiler
from dataplane.errors import SnapshotFileError, SnapshotRejected
from dataplane.snapshot import file as snapshot_file
from interlock_contracts.snapshot_hash import snapshot_content_hash
from interlock_contracts.v1 import policy_pb2


def make_snapshot(version: int, *, model: str = "") -> policy_pb2.PolicySnapshot:
    s = policy_pb2.PolicySnapshot(version=version, created_unix_ms=1_700_000_000_000 + version, key_hash_scheme="hmac-sha256")
    s.providers.add(name="openai", kind="openai", base_url="https://api.openai.example", credential_ref="env:OPENAI_API_KEY")
    s.models.add(name=model or f"model-v{version}", provider="openai", upstream_name="gpt-x")
    s.keys.add(id="vk_0001", key_hash=bytes(range(32)), team_id="core")
    s.content_hash = snapshot_content_hash(s)
    return s


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_compiled_snapshots_verify_on_the_data_plane() -> None:
    from controlplane.policy.model import Model, PolicyDocument, Provider

    doc = PolicyDocument(providers=[Provider(name="p", base_url="http://127.0.0.1:1/v1")], models=[Model(name="m", provider="p")])
    s = compiler.compile_snapshot(doc, [], version=4, now_ms=1)
    snapshot_file.verify(s)
    s.models[0].upstream_name = "tampered"
    with pytest.raises(SnapshotRejected):
        snapshot_file.verify(s)


def test_hash_ignores_version_and_creation_time() -> None:
    a, b = make_snapshot(3, model="m"), make_snapshot(9, model="m")
    assert a.content_hash == b.content_hash
    assert make_snapshot(3, model="other").content_hash != a.content_hash


def test_verify_accepts_a_correct_snapshot() -> None:
    snapshot_file.verify(make_snapshot(1))


def test_verify_rejects_tampered_content_with_reason() -> None:
    s = make_snapshot(4)
    s.keys[0].revoked = True
    with pytest.raises(SnapshotRejected) as exc_info:
        snapshot_file.verify(s)
    assert "content hash mismatch for version 4" in exc_info.value.reason


def test_verify_rejects_missing_hash_and_version_zero() -> None:
    s = make_snapshot(4)
    s.content_hash = ""
    with pytest.raises(SnapshotRejected, match=r"claims \(empty\)"):
        snapshot_file.verify(s)
    with pytest.raises(SnapshotRejected, match="version 0"):
        snapshot_file.verify(make_snapshot(0))


def test_save_then_load_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "state" / "snapshot.pb"  # the state dir does not exist on first boot
    s = make_snapshot(7)
    snapshot_file.save(path, s)
    assert snapshot_file.load(path) == s
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # holds key hashes
    assert leftovers(path.parent) == []


def test_save_replaces_and_leaves_no_tmp_files(tmp_path: Path) -> None:
    path = tmp_path / "snapshot.pb"
    for v in (1, 2, 3):
        snapshot_file.save(path, make_snapshot(v))
    loaded = snapshot_file.load(path)
    assert loaded is not None and loaded.version == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["snapshot.pb"]


def test_failed_save_keeps_the_old_file_and_cleans_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "snapshot.pb"
    snapshot_file.save(path, make_snapshot(1))

    def fail_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail_replace)
    with pytest.raises(SnapshotFileError, match="No space left on device"):
        snapshot_file.save(path, make_snapshot(2))
    monkeypatch.undo()
    loaded = snapshot_file.load(path)
    assert loaded is not None and loaded.version == 1
    assert leftovers(tmp_path) == []


def test_save_into_unusable_directory_is_a_snapshot_file_error(tmp_path: Path) -> None:
    (tmp_path / "not-a-dir").write_text("x")
    with pytest.raises(SnapshotFileError, match="cannot write snapshot file"):
        snapshot_file.save(tmp_path / "not-a-dir" / "snapshot.pb", make_snapshot(1))


def test_load_missing_file_is_none(tmp_path: Path) -> None:
    assert snapshot_file.load(tmp_path / "snapshot.pb") is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b"\xff\xff\xff\xff\xff", "not a PolicySnapshot"),
        (make_snapshot(5).SerializeToString()[:-7], "corrupt"),  # torn write from a non-atomic copy
    ],
    ids=["empty", "garbage", "truncated"],
)
def test_load_corrupt_file_raises(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "snapshot.pb"
    path.write_bytes(content)
    with pytest.raises(SnapshotFileError, match=message):
        snapshot_file.load(path)


def test_load_tampered_file_raises(tmp_path: Path) -> None:
    path = tmp_path / "snapshot.pb"
    s = make_snapshot(5)
    s.keys[0].team_id = "attacker"  # content changed, hash left as it was
    path.write_bytes(s.SerializeToString())
    with pytest.raises(SnapshotFileError, match="content hash mismatch"):
        snapshot_file.load(path)


def test_load_unreadable_path_raises(tmp_path: Path) -> None:
    with pytest.raises(SnapshotFileError, match="cannot read snapshot file"):
        snapshot_file.load(tmp_path)  # a directory
