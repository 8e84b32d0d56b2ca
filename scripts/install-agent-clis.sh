#!/usr/bin/env bash
# Installs the coding-agent CLIs that tests/e2e/test_agent_clis.py runs through the gateway
# (Claude Code, Codex CLI, Gemini CLI) at the exact versions pinned in tests/agents/
# package.json + package-lock.json, into .cache/agents. Idempotent: when the installed
# tree matches the lockfile it only checks the binaries run.
set -euo pipefail
cd "$(dirname "$0")/.."

SRC=tests/agents
DEST=.cache/agents
STAMP="$DEST/.lock-sha256"

if ! command -v npm >/dev/null 2>&1; then
    echo "install-agent-clis: npm not found; installing Node.js from Debian packages"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq nodejs npm
fi

# The tests trace each CLI's connect() calls to prove nothing but the gateway is contacted.
if ! command -v strace >/dev/null 2>&1; then
    echo "install-agent-clis: installing strace from Debian packages"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq strace
fi

want="$(cat "$SRC/package.json" "$SRC/package-lock.json" | sha256sum | cut -d' ' -f1)"
bin="$DEST/node_modules/.bin"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] \
        && [ -x "$bin/claude" ] && [ -x "$bin/codex" ] && [ -x "$bin/gemini" ]; then
    echo "install-agent-clis: pinned CLIs already installed in $DEST"
else
    echo "install-agent-clis: installing pinned CLIs from the npm registry into $DEST"
    mkdir -p "$DEST"
    cp "$SRC/package.json" "$SRC/package-lock.json" "$DEST/"
    # No update notifier, audit or funding calls; optional native addons (node-pty, keytar)
    # are not needed for non-interactive runs, so their build scripts may fail harmlessly.
    (cd "$DEST" && npm ci --no-audit --no-fund --no-update-notifier --loglevel=error)
    echo "$want" >"$STAMP"
fi

for cli in claude codex gemini; do
    if [ ! -x "$bin/$cli" ]; then
        echo "install-agent-clis: $bin/$cli missing after install" >&2
        exit 1
    fi
    # --version with the CLIs' own network switches off, so even this check contacts nothing.
    version="$(CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 DISABLE_AUTOUPDATER=1 \
        "$bin/$cli" --version </dev/null 2>/dev/null | head -n 1)"
    printf 'install-agent-clis: %-6s %s\n' "$cli" "$version"
done
