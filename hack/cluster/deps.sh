#!/usr/bin/env bash
# deps.sh installs the Debian packages the real cluster runs on: containerd
# (the CRI runtime), runc, the CNI plugins, iptables and conntrack (for
# kube-proxy), ipset (for kube-router's network policies). Nothing when
# they are there.
set -euo pipefail
need=()
command -v containerd >/dev/null || need+=(containerd)
command -v runc >/dev/null || need+=(runc)
[[ -x /usr/lib/cni/bridge ]] || need+=(containernetworking-plugins)
command -v iptables >/dev/null || need+=(iptables)
command -v conntrack >/dev/null || need+=(conntrack)
command -v ipset >/dev/null || need+=(ipset)
((${#need[@]})) || exit 0
export DEBIAN_FRONTEND=noninteractive
apt-get install -y --no-install-recommends "${need[@]}" >/dev/null 2>&1 ||
  { apt-get update -qq && apt-get install -y --no-install-recommends "${need[@]}" >/dev/null; }
