#!/usr/bin/env bash
# build-k8s.sh builds the real Kubernetes control-plane binaries the tests use
# (etcd, kube-apiserver, kubectl; with --e2e also kube-controller-manager and
# kube-scheduler; with --node also the kubelet and kube-proxy, for the real
# single-node cluster of `make test-cluster`) from the Go module proxy, because release tarballs and
# setup-envtest downloads are not reachable here.
#
# Output: $BIN_DIR (default bin/k8s/<k8s>-etcd<etcd>), keyed by version so a
# version bump rebuilds and an unchanged version costs nothing.
# Usage: hack/build-k8s.sh [--e2e|--node]   (prints the output folder on stdout)
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.37.2}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
root=$(cd "$(dirname "$0")/.." && pwd)
out=${BIN_DIR:-$root/bin/k8s/${K8S_VERSION}-etcd${ETCD_VERSION}}
src=$root/bin/src
mkdir -p "$out" "$src"

want=(kube-apiserver kubectl)
case "${1:-}" in
  --e2e) want+=(kube-controller-manager kube-scheduler) ;;
  --node) want+=(kube-controller-manager kube-scheduler kubelet kube-proxy) ;;
esac

log() { echo "build-k8s: $*" >&2; }

# The kubernetes module replaces every k8s.io staging module with a path its
# zip does not ship; point each one at the published module instead.
k8s_wrapper() {
  local dir=$src/k8s-$K8S_VERSION staging
  [[ -f $dir/.ready-node ]] && { echo "$dir"; return; }
  mkdir -p "$dir"
  local modfile
  modfile=$(cd "$dir" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
  staging=$(sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$modfile")
  {
    echo "module llmquota.local/k8s-build"
    echo
    echo "go 1.26"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    echo "replace ("
    for m in $staging; do echo "	$m => $m v0${K8S_VERSION#v1}"; done
    echo ")"
  } >"$dir/go.mod"
  (cd "$dir" && for b in kube-apiserver kubectl kube-controller-manager kube-scheduler kubelet kube-proxy; do
     echo "tool k8s.io/kubernetes/cmd/$b" >>go.mod; done && go mod tidy >&2)
  touch "$dir/.ready-node"
  echo "$dir"
}

etcd_wrapper() {
  local dir=$src/etcd-$ETCD_VERSION
  [[ -f $dir/.ready ]] && { echo "$dir"; return; }
  mkdir -p "$dir"
  cat >"$dir/go.mod" <<MOD
module llmquota.local/etcd-build

go 1.26

require go.etcd.io/etcd/server/v3 $ETCD_VERSION

replace (
	go.etcd.io/etcd/api/v3 => go.etcd.io/etcd/api/v3 $ETCD_VERSION
	go.etcd.io/etcd/client/pkg/v3 => go.etcd.io/etcd/client/pkg/v3 $ETCD_VERSION
	go.etcd.io/etcd/client/v3 => go.etcd.io/etcd/client/v3 $ETCD_VERSION
	go.etcd.io/etcd/pkg/v3 => go.etcd.io/etcd/pkg/v3 $ETCD_VERSION
)

tool go.etcd.io/etcd/server/v3
MOD
  (cd "$dir" && go mod tidy >&2)
  touch "$dir/.ready"
  echo "$dir"
}

if [[ ! -x $out/etcd ]]; then
  log "building etcd $ETCD_VERSION"
  dir=$(etcd_wrapper)
  (cd "$dir" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out/etcd.tmp" go.etcd.io/etcd/server/v3)
  mv "$out/etcd.tmp" "$out/etcd"
fi

minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
for b in "${want[@]}"; do
  [[ -x $out/$b ]] && continue
  log "building $b $K8S_VERSION (a few minutes cold)"
  dir=$(k8s_wrapper)
  (cd "$dir" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out/$b.tmp" "k8s.io/kubernetes/cmd/$b")
  mv "$out/$b.tmp" "$out/$b"
done
echo "$out"
