"""`<snapshot>.sum`: what this node already proved about its snapshot file, so a boot need not prove it again.

Verifying a snapshot means hashing every keyed resource (300,000 at 100,000 run keys: most of a cold start).
After the node has verified a state and written it to the snapshot file, it records the SHA-256 of the
file's bytes, the version, the content hash and the verified sum of resource digests. At boot, if the file's
bytes hash to the recorded value, that sum is the one the node computed from exactly these bytes; the
state is indexed with it (resource digests are then computed only for resources a delta touches) and its
content hash is still checked against the freshly digested body. Any mismatch, a missing or unreadable
sidecar: the full verification, as before. The sidecar is an optimisation, never trusted on its own.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)


def sum_path(snapshot_path: Path) -> Path:
    return snapshot_path.with_name(snapshot_path.name + ".sum")


def write(snapshot_path: Path, file_sha256: str, version: int, content_hash: str, total: int) -> None:
    """Atomically (re)write the sidecar. Best effort: a failure only makes the next boot verify in full."""
    path = sum_path(Path(snapshot_path))
    record = {"sha256": file_sha256, "version": version, "content_hash": content_hash, "total": f"{total:x}"}
    tmp = ""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(record, f)
        os.replace(tmp, path)
        tmp = ""
    except OSError as exc:
        log.warning("cannot write %s (%s); the next boot verifies the snapshot in full", path, exc)
    finally:
        if tmp:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def trusted_total(snapshot_path: Path, data: bytes, version: int, content_hash: str) -> int | None:
    """The recorded digest sum if the sidecar describes exactly these bytes at this version and hash."""
    path = sum_path(Path(snapshot_path))
    try:
        record = json.loads(path.read_text())
        if (record["version"], record["content_hash"]) != (version, content_hash):
            return None
        if record["sha256"] != hashlib.sha256(data).hexdigest():
            log.warning("%s does not match the snapshot file's bytes; verifying it in full", path)
            return None
        return int(record["total"], 16)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring unreadable %s (%s); verifying the snapshot in full", path, exc)
        return None
