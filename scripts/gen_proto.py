"""Regenerate (or, with --check, verify) the committed protobuf/gRPC code.

Sources live in proto/interlock_contracts/v1/*.proto; generated modules land in
interlock_contracts/v1/ (the proto package stays `interlock.v1`:
wire and gRPC names are unchanged).
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
OUT_PKG = Path("interlock_contracts") / "v1"


def generate(out_root: Path) -> list[Path]:
    sources = sorted(str(p.relative_to(PROTO_DIR)) for p in (PROTO_DIR / "interlock_contracts" / "v1").glob("*.proto"))
    include = str(Path(protoc.__file__).parent / "_proto")
    args = [
        "protoc",
        f"-I{PROTO_DIR}",
        f"-I{include}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    return sorted(p for p in (out_root / OUT_PKG).iterdir() if p.suffix in {".py", ".pyi"} and "_pb2" in p.name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if committed code differs from a fresh generation")
    ns = parser.parse_args()
    if not ns.check:
        generate(ROOT)
        print(f"generated into {OUT_PKG}/")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        drift = [p.name for p in fresh if not (ROOT / OUT_PKG / p.name).exists() or not filecmp.cmp(p, ROOT / OUT_PKG / p.name, shallow=False)]
        committed = {p.name for p in (ROOT / OUT_PKG).iterdir() if "_pb2" in p.name}
        stale = sorted(committed - {p.name for p in fresh})
    if drift or stale:
        print(f"protobuf drift: regenerate with `python scripts/gen_proto.py` (changed: {drift}, stale: {stale})")
        return 1
    print("protobuf code is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
