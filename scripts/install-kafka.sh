#!/bin/sh
# Install Apache Kafka (KRaft) jars for the integration tests: Maven resolves
# deploy/kafka/pom.xml from Maven Central into .cache/kafka/libs, and
# tests/fixtures/kafka.py runs `java -cp '.cache/kafka/libs/*' kafka.Kafka`.
# Idempotent: a stamp holding the pom's hash makes a repeat run instant; a changed
# pom reinstalls. Needs java (17+) and mvn on PATH.
set -eu
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
POM="$ROOT/deploy/kafka/pom.xml"
DEST="$ROOT/.cache/kafka"
STAMP="$DEST/libs/.installed"
WANT="$(sha256sum "$POM" | cut -d' ' -f1)"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
    echo "kafka: already installed in $DEST/libs ($(ls "$DEST/libs" | grep -c '\.jar$') jars)"
    exit 0
fi
for tool in java mvn; do
    command -v "$tool" >/dev/null 2>&1 || { echo "kafka: $tool is required (JDK 17+ and Maven)" >&2; exit 1; }
done

echo "kafka: resolving $(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM") from Maven Central (deploy/kafka/pom.xml)..."
mkdir -p "$DEST"
TMP="$(mktemp -d "$DEST/libs.tmp.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
mvn -q -B -Dstyle.color=never -f "$POM" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$TMP"
echo "$WANT" > "$TMP/.installed"
# swap in the complete directory so an interrupted run never leaves a half-filled libs/
rm -rf "$DEST/libs.old"
[ -d "$DEST/libs" ] && mv "$DEST/libs" "$DEST/libs.old"
mv "$TMP" "$DEST/libs"
rm -rf "$DEST/libs.old"
trap - EXIT
echo "kafka: installed $(ls "$DEST/libs" | grep -c '\.jar$') jars in $DEST/libs"
