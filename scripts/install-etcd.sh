#!/bin/sh
# Install etcd for the integration tests (tests/fixtures/etcd.py starts it). Idempotent.
set -eu
if command -v etcd >/dev/null 2>&1; then
    etcd --version | head -n 1
    exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update
$SUDO apt-get install -y etcd-server
etcd --version | head -n 1
