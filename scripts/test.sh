#!/usr/bin/env bash
# Installs everything the tests need (Python deps, etcd) on a fresh machine, then runs
# the drift check, linters, type checks and the full test suite. CI calls this via .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "installing system services the tests start (etcd)"
bash scripts/install-etcd.sh

step "installing nginx (serves recorded provider responses in tests and benchmarks)"
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq nginx-light
fi

step "installing Debian chromium + chromedriver (console browser tests drive it with Playwright; no browser download)"
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium chromium-driver
fi

step "installing Apache Kafka (KRaft, jars from Maven Central) for the usage-pipeline tests"
bash scripts/install-kafka.sh

step "installing the pinned coding-agent CLIs (Claude Code, Codex, Gemini CLI) for tests/e2e/test_agent_clis.py"
bash scripts/install-agent-clis.sh

step "installing interlock with test dependencies (versions pinned by constraints.txt)"
. scripts/venv.sh  # the active virtualenv, or ./.venv (INTERLOCK_NO_VENV=1: python3 as it is)
python3 -m pip install --disable-pip-version-check -q -c constraints.txt -e '.[test]'

step "helm chart: pinned helm (scripts/install-helm.sh, cached in .cache/tools), deploy/helm/validate.sh"
bash scripts/install-helm.sh >/dev/null
REQUIRE_SCHEMA=1 bash deploy/helm/validate.sh

step "checking generated protobuf code for drift"
python3 scripts/gen_proto.py --check

step "ruff"
python3 -m ruff check .

step "mypy"
python3 -m mypy

step "import structure (import-linter contracts in pyproject.toml)"
lint-imports --no-cache

step "pytest"
python3 -m pytest -q -p no:cacheprovider "$@"
