#!/usr/bin/env bash
# One command to a working gateway on this machine: installs interlock and runs the
# control plane, data plane, fake provider and usage store in one process (no etcd,
# Kafka or ClickHouse server needed). State lives in ./.interlock/.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --disable-pip-version-check -q -e .
exec interlock dev "$@"
