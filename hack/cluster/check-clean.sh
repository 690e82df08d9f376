#!/usr/bin/env bash
# check-clean.sh fails, naming what is left, if anything of the cluster is
# still on the machine after down.sh: processes, mounts, iptables rules, ipsets,
# the bridge, cgroups, CLUSTER_DIR, or a sysctl up.sh changed.
set -uo pipefail
source "$(dirname "$0")/env.sh"
left=()
for p in $(cluster_pids); do
  left+=("process $p: $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | cut -c1-120)")
done
n=$(grep -cF "$CLUSTER_DIR" /proc/self/mounts) && left+=("$n mounts under $CLUSTER_DIR")
for s in iptables-save ip6tables-save; do
  n=$($s 2>/dev/null | grep -cE 'KUBE-|CNI-') && left+=("$n KUBE-/CNI- lines in $s")
done
n=$(ipset list -n 2>/dev/null | grep -cE "$IPSET_NAMES") && left+=("$n kube-router ipsets")
ip link show "$BRIDGE" >/dev/null 2>&1 && left+=("the bridge $BRIDGE")
for h in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do [[ -d ${h%/}$CGROUP_ROOT ]] && left+=("cgroup ${h%/}$CGROUP_ROOT"); done
[[ -e $CLUSTER_DIR ]] && left+=("$CLUSTER_DIR")
[[ $(sysctl -n net.ipv4.ip_forward) == "${IP_FORWARD_BEFORE:-0}" ]] || left+=("net.ipv4.ip_forward=$(sysctl -n net.ipv4.ip_forward)")
if ((${#left[@]})); then
  printf 'cluster left on this machine: %s\n' "${left[@]}" >&2
  exit 1
fi
echo "cluster check-clean: nothing left"
