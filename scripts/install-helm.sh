#!/bin/sh
# Install the pinned helm used by deploy/helm/validate.sh into .cache/tools/bin,
# built with `go install` from the Go module proxy. Idempotent: a binary already at the pinned version
# makes a rerun instant. Needs Go (1.22+). Prints the bin dir to put on PATH.
set -eu
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
HELM_VERSION="${HELM_VERSION:-v3.19.0}"
BIN="$ROOT/.cache/tools/bin"
mkdir -p "$BIN"
command -v go >/dev/null 2>&1 || { echo "helm: Go is required to build helm (https://go.dev/dl/)" >&2; exit 1; }

build() {  # name, module@version, stamp
    if [ -x "$BIN/$1" ] && [ "$(cat "$BIN/.$1.version" 2>/dev/null)" = "$2" ]; then return 0; fi
    echo "installing $2 (go install; a few minutes the first time)..." >&2
    GOBIN="$BIN" GOFLAGS=-mod=mod go install "$2"
    echo "$2" > "$BIN/.$1.version"
}
build helm "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
echo "$BIN"
