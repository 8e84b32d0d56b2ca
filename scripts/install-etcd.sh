#!/bin/sh
# Install etcd and etcdctl (tests/fixtures/etcd.py and scripts/prod-local.sh start etcd; etcdctl
# inspects it). Idempotent.
set -eu
if command -v etcd >/dev/null 2>&1 && command -v etcdctl >/dev/null 2>&1; then
    etcd --version | head -n 1
    exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update
$SUDO apt-get install -y etcd-server etcd-client
etcd --version | head -n 1
