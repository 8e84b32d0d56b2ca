#!/usr/bin/env bash
# Install the load tools used by benchmarks/ (idempotent; safe to re-run).
#
#   nginx-light, wrk   from apt (Debian/Ubuntu)
#   vegeta             `go install` at a pinned version into <repo>/.cache/bench/bin (gitignored)
#
# Override the vegeta destination with BENCH_BIN=/some/dir. Needs Go >= 1.22 on PATH.
set -euo pipefail

VEGETA_VERSION="v12.13.0"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH_BIN="${BENCH_BIN:-$REPO/.cache/bench/bin}"

need_apt=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need_apt+=(nginx-light)
command -v wrk >/dev/null 2>&1 || need_apt+=(wrk)
command -v taskset >/dev/null 2>&1 || need_apt+=(util-linux)
if [ "${#need_apt[@]}" -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing with apt: ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
else
  echo "apt tools present: nginx, wrk, taskset"
fi

# The distro unit would start a system nginx on :80; the benchmark runs its own instance, so leave that alone.

have_version() {
  [ -x "$BENCH_BIN/vegeta" ] && [ -f "$BENCH_BIN/.vegeta-version" ] && [ "$(cat "$BENCH_BIN/.vegeta-version")" = "$VEGETA_VERSION" ]
}

if have_version; then
  echo "vegeta $VEGETA_VERSION present at $BENCH_BIN/vegeta"
else
  if ! command -v go >/dev/null 2>&1; then
    echo "error: Go is required to install vegeta (https://go.dev/dl/)" >&2
    exit 1
  fi
  mkdir -p "$BENCH_BIN"
  echo "go install github.com/tsenart/vegeta/v12@$VEGETA_VERSION -> $BENCH_BIN"
  GOBIN="$BENCH_BIN" go install "github.com/tsenart/vegeta/v12@$VEGETA_VERSION"
  echo "$VEGETA_VERSION" >"$BENCH_BIN/.vegeta-version"
fi

"$BENCH_BIN/vegeta" -h >/dev/null 2>&1 || { echo "error: $BENCH_BIN/vegeta does not run" >&2; exit 1; }
echo "ok: run  python benchmarks/dataplane_overhead.py"
