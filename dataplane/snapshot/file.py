"""The last good policy snapshot on disk: verified, written atomically.

The file is the raw protobuf encoding of a PolicySnapshot. It lets a node keep
serving across restarts while the control plane is unreachable, so a file that
is truncated, corrupt or tampered with must never be applied: every load is
verified against the snapshot's own content hash.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

from google.protobuf.message import DecodeError

from dataplane.durable.fsync import fsync_dir
from dataplane.errors import SnapshotFileError, SnapshotRejected
from interlock_contracts.snapshot_hash import snapshot_content_hash
from interlock_contracts.v1 import policy_pb2


def verify(snapshot: policy_pb2.PolicySnapshot) -> None:
    """Raise SnapshotRejected unless the snapshot's content hash matches its content."""
    if snapshot.version == 0:
        # Version 0 means "no snapshot" in Hello; accepting one would make the node look empty.
        raise SnapshotRejected("snapshot has version 0, which is reserved for 'no snapshot'")
    actual = snapshot_content_hash(snapshot)
    if snapshot.content_hash != actual:
        claimed = snapshot.content_hash[:12] or "(empty)"
        raise SnapshotRejected(
            f"content hash mismatch for version {snapshot.version}: snapshot claims {claimed}, content hashes to {actual[:12]}"
        )


def save(path: Path, snapshot: policy_pb2.PolicySnapshot) -> str:
    """Replace `path` with `snapshot` atomically: readers see the old file or the new one, never a mix.
    Returns the SHA-256 (hex) of the bytes written.

    Raises SnapshotFileError; on failure the previous file is left untouched.
    """
    path = Path(path)
    data = snapshot.SerializeToString(deterministic=True)
    tmp_name = ""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Same directory so os.replace is a rename within one filesystem; mkstemp creates
        # the file 0600, which suits a file holding key hashes.
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
        tmp_name = ""
        fsync_dir(path.parent)  # make the rename itself durable across power loss
    except OSError as exc:
        raise SnapshotFileError(f"cannot write snapshot file {path}: {exc.strerror or exc}") from exc
    finally:
        if tmp_name:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)
    return hashlib.sha256(data).hexdigest()


def load(path: Path, *, verify_hash: bool = True) -> policy_pb2.PolicySnapshot | None:
    """The verified snapshot stored at `path`, or None if there is no file.
    `verify_hash=False`: the caller verifies it (SnapshotSync does, through the indexed state's hash).

    Raises SnapshotFileError if the file exists but cannot be read, parsed or verified.
    """
    data = read(path)
    if data is None:
        return None
    snapshot = parse(path, data)
    try:
        if verify_hash:
            verify(snapshot)
    except SnapshotRejected as exc:
        raise SnapshotFileError(f"snapshot file {path} is corrupt: {exc.reason}") from exc
    return snapshot


def read(path: Path) -> bytes | None:
    """The file's bytes (None: no file). Raises SnapshotFileError if it cannot be read or is empty."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SnapshotFileError(f"cannot read snapshot file {path}: {exc.strerror or exc}") from exc
    if not data:
        raise SnapshotFileError(f"snapshot file {path} is empty; delete it to boot from the control plane only")
    return data


def parse(path: Path, data: bytes) -> policy_pb2.PolicySnapshot:
    """Decode (not verify) the bytes read from `path`. Raises SnapshotFileError."""
    snapshot = policy_pb2.PolicySnapshot()
    try:
        snapshot.ParseFromString(data)
    except DecodeError as exc:
        raise SnapshotFileError(f"snapshot file {path} is corrupt (not a PolicySnapshot): {exc}") from exc
    return snapshot
