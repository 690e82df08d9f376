#!/usr/bin/env bash
# down.sh stops the cluster up.sh started and puts the machine back as it
# was: pods deleted through the kubelet (so the CNI plugins undo their
# network), processes stopped, mounts, the bridge, KUBE-/CNI- iptables rules,
# cgroups and sysctls undone, CLUSTER_DIR removed (KEEP=1 keeps it, for the
# logs). Safe to run twice, after a failed up.sh, or after a crash.
set -uo pipefail
source "$(dirname "$0")/env.sh"
[[ -d $CLUSTER_DIR ]] || exit 0

log() { echo "cluster down: $*" >&2; }
# a live process whose command line names CLUSTER_DIR (never a reused pid)
ours() {
  [[ -r /proc/$1/stat && $(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null) != Z ]] &&
    tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF "$CLUSTER_DIR"
}
alive() { [[ -f $PIDS/$1 ]] && ours "$(cat "$PIDS/$1")"; }
stop() { # stop NAME [SECONDS]: SIGTERM, then SIGKILL
  [[ -f $PIDS/$1 ]] || return 0
  local p; p=$(cat "$PIDS/$1")
  if ours "$p"; then
    kill -TERM "$p" 2>/dev/null
    for ((i = 0; i < ${2:-20} * 10; i++)); do ours "$p" || break; sleep 0.1; done
    ours "$p" && kill -KILL "$p" 2>/dev/null && sleep 0.5
  fi
  rm -f "$PIDS/$1"
}

# 1. Pods away while the kubelet still works, so each sandbox gets its CNI DEL.
if alive kube-apiserver && alive kubelet && kc get --raw /readyz >/dev/null 2>&1; then
  stop kube-controller-manager; stop kube-scheduler # nothing recreates pods now
  kc delete pods --all --all-namespaces --grace-period=1 --wait=false >/dev/null 2>&1
  for ((i = 0; i < 120; i++)); do [[ -z $(kc get pods -A -o name 2>/dev/null) ]] && break; sleep 0.5; done
  for ((i = 0; i < 40; i++)); do [[ -z $(cctr tasks ls -q 2>/dev/null) ]] && break; sleep 0.5; done
fi

# 2. kube-proxy and kube-router (their rules go in 5); the kubelet;
# containers left behind; containerd.
stop kube-router
stop kube-proxy
"$K8S_BIN/kube-proxy" --cleanup --v=0 >/dev/null 2>&1
stop kubelet 30
if alive containerd; then
  for id in $(cctr tasks ls -q 2>/dev/null); do cctr tasks kill -s SIGKILL "$id" >/dev/null 2>&1; done
  sleep 1
  for id in $(cctr tasks ls -q 2>/dev/null); do cctr tasks delete -f "$id" >/dev/null 2>&1; done
  for id in $(cctr containers ls -q 2>/dev/null); do cctr containers delete "$id" >/dev/null 2>&1; done
fi
stop containerd
for p in $(pgrep -f "containerd-shim-runc-v2 .*-address $CTRD_SOCK" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done

# 3. The control plane, then anything else still naming CLUSTER_DIR.
stop kube-scheduler; stop kube-controller-manager; stop kube-apiserver; stop etcd
for p in $(cluster_pids); do kill -KILL "$p" 2>/dev/null; done

# 4. Mounts under CLUSTER_DIR (volumes, rootfs overlays, netns, the kubelet root), deepest first.
for ((pass = 0; pass < 3; pass++)); do
  mapfile -t mounts < <(awk -v d="$CLUSTER_DIR" 'index($2, d) == 1 {print $2}' /proc/self/mounts | sort -r)
  ((${#mounts[@]})) || break
  for m in "${mounts[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; done
done

# 5. Network: veths on the bridge, the bridge, every KUBE-/CNI- chain and rule.
for v in $(ip -o link show master "$BRIDGE" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do ip link del "$v" 2>/dev/null; done
ip link del "$BRIDGE" 2>/dev/null
for fam in iptables ip6tables; do
  for backend in nft legacy; do
    command -v "$fam-$backend-save" >/dev/null || continue
    rules=$("$fam-$backend-save" 2>/dev/null) || continue
    grep -qE 'KUBE-|CNI-' <<<"$rules" || continue
    grep -vE 'KUBE-|CNI-' <<<"$rules" | "$fam-$backend-restore"
  done
done
# kube-router's ipsets, once no rule names them.
for set in $(ipset list -n 2>/dev/null | grep -E "$IPSET_NAMES"); do ipset destroy "$set" 2>/dev/null; done
# iptables-nft leaves its tables behind, empty; drop them if the machine had no ruleset.
if command -v nft >/dev/null && [[ -f $CLUSTER_DIR/baseline/nft && ! -s $CLUSTER_DIR/baseline/nft ]]; then
  rest=$(nft list ruleset 2>/dev/null | grep -vE '^\s*(table .*\{|chain .*\{|type .* policy .*;|\}|)$')
  [[ -z $rest ]] && nft flush ruleset 2>/dev/null
fi

# 6. cgroups, sysctls, and what the kubelet and CNI write outside CLUSTER_DIR.
for h in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
  [[ -d ${h%/}$CGROUP_ROOT ]] && find "${h%/}$CGROUP_ROOT" -depth -type d -exec rmdir {} \; 2>/dev/null
done
if [[ -f $CLUSTER_DIR/baseline/sysctl ]]; then
  while IFS='=' read -r k v; do
    [[ $(sysctl -n "$k" 2>/dev/null) == "$v" ]] || sysctl -qw "$k=$v"
  done <"$CLUSTER_DIR/baseline/sysctl"
fi
if [[ -f $CLUSTER_DIR/baseline/paths ]]; then
  for d in /var/lib/cni /var/log/containers /var/log/pods /var/lib/kubelet /etc/kubernetes; do
    [[ -e $d ]] && ! grep -qx "$d" "$CLUSTER_DIR/baseline/paths" && rm -rf "$d"
  done
  [[ -d /run/containerd/s ]] && ! grep -qx /run/containerd/s "$CLUSTER_DIR/baseline/paths" && rmdir /run/containerd/s 2>/dev/null
fi

left=$(awk -v d="$CLUSTER_DIR" 'index($2, d) == 1' /proc/self/mounts | wc -l)
((left == 0)) || log "$left mounts under $CLUSTER_DIR could not be removed"
[[ ${KEEP:-0} == 1 ]] || rm -rf "$CLUSTER_DIR" 2>/dev/null || log "could not remove all of $CLUSTER_DIR"
log "done"
exit 0
