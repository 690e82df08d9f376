#!/usr/bin/env bash
# up.sh starts a real single-node Kubernetes cluster on this machine, offline:
# etcd, kube-apiserver, kube-controller-manager and kube-scheduler as
# processes; a private containerd with runc and the CNI bridge; a real
# kubelet registering one node; kube-proxy in iptables mode; kube-router's
# network policy controller, so NetworkPolicy is enforced. Images come from
# the OCI archives in IMAGES_DIRS (make images, make cluster-images); nothing
# is pulled. Whatever an earlier run left (a crash, a killed test) is cleaned
# up first. Prints the admin kubeconfig's path. down.sh undoes it all.
#
# Needs root and the Debian packages deps.sh installs; the binaries come from
# hack/build-k8s.sh --node. Only one such cluster runs on a machine at a time
# (the kubelet's device-plugin socket path is fixed).
set -euo pipefail
here=$(dirname "$0")
source "$here/env.sh"

log() { echo "cluster up: $*" >&2; }
die() { echo "cluster up: ERROR: $*" >&2; exit 1; }
wait_for() { # wait_for WHAT SECONDS COMMAND...
  local what=$1 end=$((SECONDS + $2)); shift 2
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < end)) || die "timed out waiting for $what (logs in $LOGS)"
    sleep 0.5
  done
}
start() { # start NAME COMMAND...: detached, in its own session, pid recorded
  local name=$1; shift
  setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$PIDS/$name"
}

for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl; do
  [[ -x $K8S_BIN/$b ]] || die "missing $K8S_BIN/$b (hack/build-k8s.sh --node builds it)"
done
[[ -x $KUBE_ROUTER ]] || die "missing $KUBE_ROUTER (make cluster-deps builds it)"
for b in containerd containerd-shim-runc-v2 runc ctr iptables conntrack ipset openssl; do
  command -v "$b" >/dev/null || die "missing $b (hack/cluster/deps.sh installs it)"
done
for p in bridge host-local loopback portmap; do [[ -x $CNI_BIN/$p ]] || die "missing the CNI plugin $CNI_BIN/$p"; done
for d in $IMAGES_DIRS; do compgen -G "$d/*.tar" >/dev/null || die "no image archives in $d (make images cluster-images)"; done
[[ -n $NODE_IP ]] || die "cannot find this machine's IP (set NODE_IP)"
(($(id -u) == 0)) || die "needs root (mounts, network namespaces, iptables, cgroups)"

if [[ -e $CLUSTER_DIR ]]; then
  log "cleaning up what an earlier run left in $CLUSTER_DIR"
  "$here/down.sh"
fi
mkdir -p "$LOGS" "$PIDS" "$CLUSTER_DIR/run" "$CLUSTER_DIR/baseline"

# What down.sh puts back.
for s in net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables \
  vm.overcommit_memory kernel.panic kernel.panic_on_oops; do
  v=$(sysctl -n "$s" 2>/dev/null) && echo "$s=$v"
done >"$CLUSTER_DIR/baseline/sysctl"
for d in /var/lib/cni /var/log/containers /var/log/pods /var/lib/kubelet /etc/kubernetes /run/containerd/s; do
  [[ -e $d ]] && echo "$d"
done >"$CLUSTER_DIR/baseline/paths"
nft list ruleset >"$CLUSTER_DIR/baseline/nft" 2>/dev/null || true

"$here/pki.sh"

start etcd "$K8S_BIN/etcd" --name llmquota --data-dir "$CLUSTER_DIR/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster "llmquota=http://127.0.0.1:$ETCD_PEER_PORT" --unsafe-no-fsync --log-level warn
wait_for etcd 60 curl -sf "http://127.0.0.1:$ETCD_PORT/health"

start kube-apiserver "$K8S_BIN/kube-apiserver" --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
  --bind-address 0.0.0.0 --secure-port "$API_PORT" --advertise-address "$NODE_IP" \
  --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" --client-ca-file "$PKI/ca.crt" \
  --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
  --kubelet-preferred-address-types InternalIP --service-cluster-ip-range "$SVC_CIDR" \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
  --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction --allow-privileged=true --profiling=false --v=1
wait_for "kube-apiserver /readyz" 180 kc get --raw /readyz
log "API server ready"

start kube-controller-manager "$K8S_BIN/kube-controller-manager" --kubeconfig "$CLUSTER_DIR/controller-manager.kubeconfig" \
  --authentication-kubeconfig "$CLUSTER_DIR/controller-manager.kubeconfig" --authorization-kubeconfig "$CLUSTER_DIR/controller-manager.kubeconfig" \
  --bind-address 127.0.0.1 --secure-port "$KCM_PORT" --leader-elect=false --use-service-account-credentials=true \
  --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
  --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
  --allocate-node-cidrs=true --cluster-cidr "$CLUSTER_CIDR" --node-cidr-mask-size 24 --service-cluster-ip-range "$SVC_CIDR" --v=1
start kube-scheduler "$K8S_BIN/kube-scheduler" --kubeconfig "$CLUSTER_DIR/scheduler.kubeconfig" \
  --authentication-kubeconfig "$CLUSTER_DIR/scheduler.kubeconfig" --authorization-kubeconfig "$CLUSTER_DIR/scheduler.kubeconfig" \
  --bind-address 127.0.0.1 --secure-port "$SCHED_PORT" --leader-elect=false --v=1

# A containerd of our own (root, state, socket under CLUSTER_DIR); one the
# machine may already run is left alone.
mkdir -p "$CLUSTER_DIR/containerd" "$CLUSTER_DIR/cni/net.d" "$CLUSTER_DIR/cni/ipam"
cat >"$CLUSTER_DIR/cni/net.d/10-llmquota.conflist" <<CNI
{"cniVersion": "1.0.0", "name": "llmquota", "plugins": [
  {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": true, "hairpinMode": true,
   "ipam": {"type": "host-local", "dataDir": "$CLUSTER_DIR/cni/ipam", "ranges": [[{"subnet": "$POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
CNI
# Without CAP_SYS_RESOURCE (root in some VMs lacks it) runc cannot lower a
# sandbox's oom_score_adj ("nsexec: failed to update /proc/self/oom_score_adj:
# Permission denied"); containerd can clamp it instead.
restrict_oom=false
(((0x$(awk '/^CapEff/ {print $2}' /proc/self/status) >> 24) & 1)) || restrict_oom=true
cat >"$CLUSTER_DIR/containerd/config.toml" <<TOML
version = 2
root = "$CLUSTER_DIR/containerd/root"
state = "$CLUSTER_DIR/containerd/state"
[grpc]
  address = "$CTRD_SOCK"
[plugins."io.containerd.internal.v1.opt"]
  path = "$CLUSTER_DIR/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$SANDBOX_IMAGE"
  disable_apparmor = true
  restrict_oom_score_adj = $restrict_oom
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN"
    conf_dir = "$CLUSTER_DIR/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$CLUSTER_DIR/containerd/runc"
TOML
start containerd containerd --config "$CLUSTER_DIR/containerd/config.toml"
wait_for containerd 60 ctr --address "$CTRD_SOCK" version
for img in $(for d in $IMAGES_DIRS; do echo "$d"/*.tar; done); do
  cctr images import "$img" >/dev/null || die "importing $img failed"
done
log "images: $(cctr images ls -q | grep -v '^sha256:' | tr '\n' ' ')"

# The kubelet wants its cgroupRoot in every hierarchy already.
sysctl -qw net.ipv4.ip_forward=1
if [[ $(stat -fc %T /sys/fs/cgroup) == cgroup2fs ]]; then
  mkdir -p "/sys/fs/cgroup$CGROUP_ROOT"
  for c in $(cat /sys/fs/cgroup/cgroup.subtree_control); do echo "+$c"; done >"/sys/fs/cgroup$CGROUP_ROOT/cgroup.subtree_control" || true
else
  for h in /sys/fs/cgroup/*/; do
    [[ $(stat -fc %T "$h") == cgroupfs ]] || continue
    mkdir -p "$h${CGROUP_ROOT#/}"
    if [[ -f ${h}cpuset.cpus ]]; then # v1 cpuset children start empty
      cat "${h}cpuset.cpus" >"$h${CGROUP_ROOT#/}/cpuset.cpus"
      cat "${h}cpuset.mems" >"$h${CGROUP_ROOT#/}/cpuset.mems"
    fi
  done
fi
mkdir -p "$KUBELET_ROOT" "$CLUSTER_DIR/pod-logs"
cat >"$CLUSTER_DIR/kubelet-config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://$CTRD_SOCK
imageServiceEndpoint: unix://$CTRD_SOCK
cgroupDriver: cgroupfs
cgroupRoot: $CGROUP_ROOT
failSwapOn: false
failCgroupV1: false # cgroup v1 hosts (refused by default since 1.35)
address: $NODE_IP
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
authentication: {anonymous: {enabled: false}, webhook: {enabled: true}, x509: {clientCAFile: $PKI/ca.crt}}
authorization: {mode: Webhook}
podLogsDir: $CLUSTER_DIR/pod-logs
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
protectKernelDefaults: false
# a shared build machine: never evict, never collect the imported images
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
YAML
kubelet=("$K8S_BIN/kubelet" --config "$CLUSTER_DIR/kubelet-config.yaml" --kubeconfig "$CLUSTER_DIR/kubelet.kubeconfig"
  --root-dir "$KUBELET_ROOT" --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" --v=1)
# The kubelet sets vm.overcommit_memory, kernel.panic and kernel.panic_on_oops
# on the host. It runs in a mount namespace of its own in which those three
# are plain files, so the machine keeps its values; its root is a shared
# mount so the volumes it mounts still reach containerd.
mountpoint -q "$KUBELET_ROOT" || { mount --bind "$KUBELET_ROOT" "$KUBELET_ROOT" && mount --make-shared "$KUBELET_ROOT"; }
mkdir -p "$CLUSTER_DIR/shadow-sysctl"
shadow=""
for f in vm/overcommit_memory kernel/panic kernel/panic_on_oops; do
  cp "/proc/sys/$f" "$CLUSTER_DIR/shadow-sysctl/${f//\//_}"
  shadow+="mount --bind $CLUSTER_DIR/shadow-sysctl/${f//\//_} /proc/sys/$f && "
done
start kubelet unshare -m --propagation unchanged -- /bin/sh -c "mount --make-rprivate /proc && ${shadow} exec \"\$0\" \"\$@\"" "${kubelet[@]}"
wait_for "node $NODE_NAME Ready" 180 bash -c "[[ \$('$K8S_BIN/kubectl' --kubeconfig '$KUBECONFIG_ADMIN' get node '$NODE_NAME' -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}') == True ]]"
log "node $NODE_NAME Ready"

cat >"$CLUSTER_DIR/kube-proxy-config.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: $CLUSTER_DIR/kube-proxy.kubeconfig}
hostnameOverride: $NODE_NAME
clusterCIDR: $CLUSTER_CIDR
healthzBindAddress: 127.0.0.1:$PROXY_HEALTHZ_PORT
metricsBindAddress: 127.0.0.1:$PROXY_METRICS_PORT
# leave the machine's conntrack and route_localnet settings alone
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
iptables: {localhostNodePorts: false, masqueradeAll: false}
YAML
start kube-proxy "$K8S_BIN/kube-proxy" --config "$CLUSTER_DIR/kube-proxy-config.yaml" --v=1
wait_for kube-proxy 60 curl -sf "http://127.0.0.1:$PROXY_HEALTHZ_PORT/healthz"
# The bridge CNI enforces no NetworkPolicy; kube-router's firewall alone
# (no routing, no service proxy) does, with iptables and ipsets, as a
# cluster's CNI would: the chart's policies are tested, not only rendered.
start kube-router "$KUBE_ROUTER" --run-firewall=true --run-router=false --run-service-proxy=false \
  --run-loadbalancer=false --kubeconfig "$KUBECONFIG_ADMIN" --hostname-override "$NODE_NAME" \
  --service-cluster-ip-range "$SVC_CIDR" --health-port "$NETPOL_HEALTHZ_PORT" --metrics-port 0 --v=1
wait_for kube-router 60 curl -sf "http://127.0.0.1:$NETPOL_HEALTHZ_PORT/healthz"
wait_for "the default ServiceAccount" 60 kc -n default get serviceaccount default
log "ready in ${SECONDS}s"
echo "$KUBECONFIG_ADMIN"
