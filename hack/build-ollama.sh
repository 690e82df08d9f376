#!/usr/bin/env bash
# build-ollama.sh builds a real Ollama server (CPU backend) from the Go
# module proxy for the node agent's tests, cached in
# bin/tools/ollama-<version>/ollama and reused when present.
#
# The module zip drops llama.cpp's vendor/ headers: nlohmann/json and stb
# come from Debian's packages (downloaded and unpacked, not installed), and
# miniaudio, which no package ships, is replaced by hack/ollama/include's
# stub (audio decoding always fails; text models are unaffected).
# Usage: hack/build-ollama.sh   (prints the binary's path)
set -euo pipefail

OLLAMA_VERSION=${OLLAMA_VERSION:-v0.17.4}
root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/bin/tools/ollama-$OLLAMA_VERSION
log() { echo "build-ollama: $*" >&2; }

if [[ ! -x $out/ollama ]]; then
  mkdir -p "$out"
  inc=$out/include
  if [[ ! -d $inc/nlohmann || ! -d $inc/stb ]]; then
    log "unpacking nlohmann-json and stb headers from Debian's packages"
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    (cd "$work" && { apt-get download nlohmann-json3-dev libstb-dev >/dev/null 2>&1 ||
      { apt-get update >/dev/null && apt-get download nlohmann-json3-dev libstb-dev >/dev/null; }; })
    for deb in "$work"/*.deb; do dpkg-deb -x "$deb" "$work/x"; done
    mkdir -p "$inc"
    cp -r "$work/x/usr/include/nlohmann" "$work/x/usr/include/stb" "$inc/"
  fi
  cp -r "$root/hack/ollama/include/miniaudio" "$inc/"

  src=$root/bin/src/ollama-$OLLAMA_VERSION
  mkdir -p "$src"
  cat >"$src/go.mod" <<MOD
module llmquota.local/ollama-build

go 1.26

require github.com/ollama/ollama $OLLAMA_VERSION

tool github.com/ollama/ollama
MOD
  log "building ollama $OLLAMA_VERSION (cgo, a few minutes cold)"
  (cd "$src" && go mod tidy >&2 &&
    CGO_ENABLED=1 CGO_CPPFLAGS="-I$inc" go build -trimpath \
      -ldflags "-s -w -X github.com/ollama/ollama/version.Version=${OLLAMA_VERSION#v}" \
      -o "$out/ollama.tmp" github.com/ollama/ollama)
  mv "$out/ollama.tmp" "$out/ollama"
fi
echo "$out/ollama"
