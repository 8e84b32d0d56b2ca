#!/usr/bin/env bash
# One command to a working gateway on this machine: installs interlock and runs the
# control plane, data plane, fake provider and usage store in one process (no etcd,
# Kafka or ClickHouse server needed). State lives in ./.interlock/.
# Installs into the active virtualenv, or creates ./.venv (scripts/venv.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh
python3 -m pip install --disable-pip-version-check -q -c constraints.txt -e .
exec interlock dev "$@"
