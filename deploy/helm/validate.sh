#!/usr/bin/env bash
# Lint and render the chart with default values and every ci/*-values.yaml, check that
# every rendered document parses as YAML, and check that bad values fail with a message.
# When Go is installed, every render is also decoded strictly into the Kubernetes API
# types (schemacheck/: unknown fields and wrong types fail); SKIP_SCHEMA=1 skips that.
# schemacheck decodes every rendered object with client-go's scheme, so an unknown kind or apiVersion
# fails as well (it needs no network, unlike kubeconform's schema downloads); REQUIRE_SCHEMA=1 (CI)
# makes a missing Go an error instead of a skip. scripts/install-helm.sh installs the pinned helm.
# The production values of deploy/README.md (the `# values-prod.yaml` block) are extracted and
# rendered too, so the documented values are the tested ones.
# Usage: deploy/helm/validate.sh   (needs helm 3 and python3 with PyYAML on PATH)
set -euo pipefail
cd "$(dirname "$0")"
[ -d ../../.cache/tools/bin ] && PATH="$(cd ../../.cache/tools/bin && pwd):$PATH"
command -v helm >/dev/null || { echo "helm is not installed: run scripts/install-helm.sh (pinned, via go install)"; exit 1; }
schema=0
if [[ "${REQUIRE_SCHEMA:-0}" == 1 ]] && ! command -v go >/dev/null; then
  echo "REQUIRE_SCHEMA=1 but Go is not installed: schemacheck/ cannot be built"; exit 1
fi
if [[ "${SKIP_SCHEMA:-0}" != 1 ]] && command -v go >/dev/null; then
  (cd schemacheck && go build -o "${TMPDIR:-/tmp}/interlock-schemacheck" .) && schema=1
fi
CHART=interlock
KUBE=${KUBE_VERSION:-1.30.0}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

render() {  # name, extra helm args...
  local name=$1; shift
  helm lint "$CHART" --strict --kube-version "$KUBE" "$@" >/dev/null
  helm template rel "$CHART" -n interlock --kube-version "$KUBE" "$@" >"$out/$name.yaml"
  python3 - "$out/$name.yaml" "$name" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
kinds = {}
for d in docs:
    assert d.get("apiVersion") and d.get("kind") and d["metadata"].get("name"), d
    kinds[d["kind"]] = kinds.get(d["kind"], 0) + 1
print(f"ok  {sys.argv[2]:<10} {len(docs)} documents: " + ", ".join(f"{k}={v}" for k, v in sorted(kinds.items())))
PY
  if [[ $schema == 1 ]]; then "${TMPDIR:-/tmp}/interlock-schemacheck" <"$out/$name.yaml" | sed 's/^/    /'; fi
}

# a usage sink must be chosen: the default values alone refuse to render (see expect_fail below)
render default --set dataPlane.usageSink=none
python3 - ../README.md "$out/prod-values.yaml" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
m = re.search(r"```yaml\n(# values-prod\.yaml\n.*?)```", text, re.S)
assert m, "deploy/README.md has no ```yaml block starting with '# values-prod.yaml'"
open(sys.argv[2], "w").write(m.group(1))
PY
render readme-prod -f "$out/prod-values.yaml"
for f in "$CHART"/ci/*-values.yaml; do
  render "$(basename "$f" -values.yaml)" -f "$f"
done

expect_fail() {  # message fragment, helm args...
  local want=$1; shift
  # a sink is chosen unless the case overrides it, so each case fails for its own reason
  if msg=$(helm template rel "$CHART" --kube-version "$KUBE" --set dataPlane.usageSink=none "$@" 2>&1); then
    echo "FAIL: expected an error containing '$want' for: $*"; exit 1
  fi
  grep -qF -- "$want" <<<"$msg" || { echo "FAIL: wrong error for $*:"; echo "$msg"; exit 1; }
  echo "ok  rejects  $* -> ...$want..."
}
expect_fail "dataPlane.usageSink is not set" --set dataPlane.usageSink=
expect_fail "kafka.bootstrapServers is required" --set ingest.enabled=true
expect_fail "must start with http:// or https://" --set ingest.enabled=true --set kafka.bootstrapServers=k:9092 --set ingest.clickhouse.dsn=chdb:///data
expect_fail "etcd.endpoints is empty" --set 'etcd.endpoints=null'
expect_fail "must not start with INTERLOCK_" --set 'dataPlane.providerCredentials[0].name=INTERLOCK_X' --set 'dataPlane.providerCredentials[0].secretName=s' --set 'dataPlane.providerCredentials[0].secretKey=k'
expect_fail "usageSink must be" --set dataPlane.usageSink=stdout
expect_fail "set only one of" --set dataPlane.podDisruptionBudget.minAvailable=1
expect_fail "grpcSecurity.tls.mode must be" --set grpcSecurity.tls.mode=bogus
expect_fail "grpcSecurity.tls.existingSecret is required" --set grpcSecurity.tls.mode=existingSecret
expect_fail "grpcSecurity.tls.clientSecret" --set grpcSecurity.tls.mode=existingSecret --set grpcSecurity.tls.existingSecret=s --set grpcSecurity.tls.mutual=true
expect_fail "mutual needs TLS" --set grpcSecurity.tls.mode=off --set grpcSecurity.tls.mutual=true
expect_fail "etcd.auth.existingSecret" --set etcd.auth.username=interlock
expect_fail "embedded evaluation etcd runs without TLS" --set etcd.embedded.enabled=true --set etcd.tls.existingSecret=s
echo "all chart checks passed"
