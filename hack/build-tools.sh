#!/usr/bin/env bash
# build-tools.sh provides the tools the chart and e2e tests run, cached in
# bin/tools/<tool>-<version>/, each reused when present:
#   kwok, kwokctl  built from the Go module proxy (sigs.k8s.io/kwok)
#   helm           built from the Go module proxy (helm.sh/helm/v3)
#   minio          a real S3-compatible server for the object-storage
#                  tests, built from the Go module proxy
#   promtool,      extracted from Debian's prometheus package (no install,
#   prometheus     so no Prometheus service is set up on the machine)
# Usage: hack/build-tools.sh   (prints "name=path" lines for each tool)
set -euo pipefail

KWOK_VERSION=${KWOK_VERSION:-v0.8.0}
HELM_VERSION=${HELM_VERSION:-v3.22.0}
MINIO_VERSION=${MINIO_VERSION:-v0.0.0-20260212201848-7aac2a2c5b7c}
root=$(cd "$(dirname "$0")/.." && pwd)
tools=$root/bin/tools
log() { echo "build-tools: $*" >&2; }

kwok_dir=$tools/kwok-$KWOK_VERSION
if [[ ! -x $kwok_dir/kwokctl || ! -x $kwok_dir/kwok ]]; then
  log "building kwok and kwokctl $KWOK_VERSION"
  GOBIN=$kwok_dir CGO_ENABLED=0 go install "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" "sigs.k8s.io/kwok/cmd/kwokctl@$KWOK_VERSION"
fi

helm_dir=$tools/helm-$HELM_VERSION
if [[ ! -x $helm_dir/helm ]]; then
  log "building helm $HELM_VERSION"
  GOBIN=$helm_dir CGO_ENABLED=0 go install -ldflags "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
fi

minio_dir=$tools/minio-$MINIO_VERSION
if [[ ! -x $minio_dir/minio ]]; then
  log "building minio $MINIO_VERSION (about 5 minutes cold)"
  GOBIN=$minio_dir CGO_ENABLED=0 go install "github.com/minio/minio@$MINIO_VERSION"
fi

prom_dir=$tools/promtool
if [[ ! -x $prom_dir/promtool || ! -x $prom_dir/prometheus ]]; then
  log "extracting promtool and prometheus from Debian's prometheus package"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && { apt-get download prometheus >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get download prometheus >/dev/null; }; })
  dpkg-deb -x "$work"/prometheus_*.deb "$work/x"
  mkdir -p "$prom_dir"
  cp "$work/x/usr/bin/promtool" "$work/x/usr/bin/prometheus" "$prom_dir/"
fi

echo "kwok=$kwok_dir/kwok"
echo "kwokctl=$kwok_dir/kwokctl"
echo "helm=$helm_dir/helm"
echo "promtool=$prom_dir/promtool"
echo "prometheus=$prom_dir/prometheus"
echo "minio=$minio_dir/minio"
