# env.sh: settings shared by up.sh and down.sh (sourced). Every one can be
# set from the environment. Everything the cluster writes lives under
# CLUSTER_DIR, except what the kernel keeps globally (iptables rules, the
# bridge, cgroups under CGROUP_ROOT, sysctls), which down.sh undoes.

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# A fixed, short path: containerd's socket must fit a unix socket path, and
# the next up.sh must find what a crashed run left behind.
CLUSTER_DIR=${CLUSTER_DIR:-/tmp/llmquota-cluster}
K8S_BIN=${K8S_BIN:-$root/bin/k8s/v1.37.2-etcdv3.6.16}
# kube-router, run only as the network policy controller (make cluster-deps
# builds it).
KUBE_ROUTER=${KUBE_ROUTER:-$root/bin/tools/kube-router-v2.1.0/kube-router}
# The image archives up.sh imports: the project's (make images) and the
# test bed's own (make cluster-images: pause, ollama-tiny).
IMAGES_DIRS=${IMAGES_DIRS:-"$root/bin/images $root/bin/cluster-images"}

NODE_NAME=${NODE_NAME:-llmquota-node}
NODE_IP=${NODE_IP:-$(ip -4 route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p')}
[[ -n $NODE_IP ]] || NODE_IP=$(hostname -I | awk '{print $1}')

# Ports below the ephemeral range, so envtest API servers cannot take them,
# and none a real cluster's default.
API_PORT=${API_PORT:-16443}
ETCD_PORT=${ETCD_PORT:-12379}
ETCD_PEER_PORT=${ETCD_PEER_PORT:-12380}
KUBELET_PORT=${KUBELET_PORT:-11250}
KUBELET_HEALTHZ_PORT=${KUBELET_HEALTHZ_PORT:-11248}
KCM_PORT=${KCM_PORT:-11257}
SCHED_PORT=${SCHED_PORT:-11259}
PROXY_HEALTHZ_PORT=${PROXY_HEALTHZ_PORT:-11256}
PROXY_METRICS_PORT=${PROXY_METRICS_PORT:-11249}
NETPOL_HEALTHZ_PORT=${NETPOL_HEALTHZ_PORT:-11260}
# The ipsets kube-router's policies create (down.sh destroys them).
IPSET_NAMES='^(inet6:)?(KUBE-|TMP-)'

CLUSTER_CIDR=${CLUSTER_CIDR:-10.244.0.0/16}
POD_CIDR=${POD_CIDR:-10.244.0.0/24}
SVC_CIDR=${SVC_CIDR:-10.96.0.0/16}
SVC_API_IP=${SVC_API_IP:-10.96.0.1}
BRIDGE=${BRIDGE:-lqbr0}
CNI_BIN=${CNI_BIN:-/usr/lib/cni}
CGROUP_ROOT=${CGROUP_ROOT:-/llmquota-cluster}
SANDBOX_IMAGE=${SANDBOX_IMAGE:-localhost/llmquota-test/pause:test}

CTRD_SOCK=$CLUSTER_DIR/run/containerd.sock
PKI=$CLUSTER_DIR/pki
KUBECONFIG_ADMIN=$CLUSTER_DIR/admin.kubeconfig
KUBELET_ROOT=$CLUSTER_DIR/kubelet
LOGS=$CLUSTER_DIR/logs
PIDS=$CLUSTER_DIR/pids

kc() { "$K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }
cctr() { ctr --address "$CTRD_SOCK" -n k8s.io "$@"; }

# cluster_pids lists the live processes whose command line names
# CLUSTER_DIR, except this script and its ancestors: the shell make runs a
# recipe in names CLUSTER_DIR too, and must not be taken for the cluster's.
cluster_pids() {
  local skip=" " p=$$ pid
  while [[ -n $p && $p -gt 1 ]]; do
    skip+="$p "
    p=$(awk '{print $4}' "/proc/$p/stat" 2>/dev/null)
  done
  for pid in $(pgrep -f -- "$CLUSTER_DIR" 2>/dev/null); do
    [[ $skip == *" $pid "* ]] && continue
    [[ $(cut -d' ' -f3 "/proc/$pid/stat" 2>/dev/null) == Z ]] && continue
    echo "$pid"
  done
}
