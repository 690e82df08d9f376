#!/usr/bin/env bash
# crash-check.sh proves the test bed survives its own crash: it starts the
# cluster with a running Pod, SIGKILLs every process of it at once (as a
# killed CI job would leave it), starts it again (up.sh cleans up first),
# then stops it and checks nothing is left on the machine.
set -euo pipefail
here=$(dirname "$0")
source "$here/env.sh"
"$here/up.sh" >/dev/null
kc run crash-probe --image="$SANDBOX_IMAGE" --image-pull-policy=Never --restart=Never >/dev/null
kc wait --for=condition=Ready pod/crash-probe --timeout=120s >/dev/null
for p in $(cluster_pids); do kill -KILL "$p" 2>/dev/null; done
sleep 1
echo "cluster crash-check: killed every process of the cluster; starting again" >&2
"$here/up.sh" >/dev/null
"$here/down.sh"
"$here/check-clean.sh"
