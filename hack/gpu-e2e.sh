#!/usr/bin/env bash
# gpu-e2e.sh proves the node agent on a real NVIDIA GPU from the repo
# (issue 15), in one prepared run of at most 8 minutes on a GPU machine
# with CUDA 13, cmake and ninja but no Go toolchain and no network.
#
#   hack/gpu-e2e.sh pack DIR            here: build and compress what that
#                                       machine needs into DIR/payload.tar.xz
#                                       (well under 64 MiB)
#   hack/gpu-e2e.sh run DIR [--dry-run] there: unpack, build Ollama's CUDA
#                                       backend for the GPU's architecture,
#                                       run test/gpu-e2e (times printed)
#
# --dry-run runs the same steps on a machine without a GPU: the CPU Ollama,
# no NVML, tiny models, no CUDA build, nvidia-smi and the watermark
# skipped; `make test-gpu-e2e-dry` (part of `make test`) packs and dry-runs
# it, so the script keeps working between GPU runs.
#
# The payload: the gpu-e2e driver and the node-agent (both glibc: go-nvml
# needs cgo, and the driver checks the pod cgroup it makes with the agent's
# own podgpu reader), the CPU ollama from hack/build-ollama.sh (the GPU run
# adds the CUDA libraries beside it, where Ollama looks:
# <exe>/../lib/ollama), etcd and kube-apiserver, the CRDs, and the part of
# Ollama's module the CUDA backend needs (../shared/notes/gpu-ollama.md has
# the recipe and figures).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
log() { echo "gpu-e2e: $*" >&2; }
cmd=${1:?usage: gpu-e2e.sh pack|run DIR [--dry-run]}
dir=${2:?usage: gpu-e2e.sh pack|run DIR [--dry-run]}

pack() {
  local K8S_BIN=${K8S_BIN:?K8S_BIN names the etcd and kube-apiserver directory (make sets it)}
  local OLLAMA=${OLLAMA:?OLLAMA names the CPU ollama binary (make sets it)}
  local OLLAMA_VERSION=${OLLAMA_VERSION:-v0.17.4}
  local stage
  stage=$(mktemp -d)
  trap 'rm -rf "$stage"' RETURN
  mkdir -p "$stage/bin" "$stage/k8s" "$stage/crds" "$stage/ollama/bin" "$dir"
  log "building the driver and the node agent"
  (cd "$root" && CGO_ENABLED=1 CGO_CFLAGS="-O2 -g -Wno-deprecated-declarations" go build -trimpath -ldflags='-s -w' -o "$stage/bin/gpu-e2e" ./test/gpu-e2e)
  (cd "$root" && CGO_ENABLED=1 CGO_CFLAGS="-O2 -g -Wno-deprecated-declarations" go build -trimpath -ldflags='-s -w' -o "$stage/bin/node-agent" ./cmd/node-agent)
  cp "$K8S_BIN/etcd" "$K8S_BIN/kube-apiserver" "$stage/k8s/"
  # Symbols are no use there and a third of the size.
  strip --strip-all "$stage/k8s/etcd" "$stage/k8s/kube-apiserver" 2>/dev/null || true
  cp "$root"/config/crd/bases/*.yaml "$stage/crds/"
  cp "$OLLAMA" "$stage/ollama/bin/ollama"
  # Only what the CUDA backend's cmake build reads.
  local mod
  mod=$(cd "$root" && go env GOMODCACHE)/github.com/ollama/ollama@$OLLAMA_VERSION
  if [[ -d $mod ]]; then
    (cd "$mod" && tar --exclude='*.go' --exclude='ggml-metal' --exclude='ggml-vulkan' -cf - \
      CMakeLists.txt CMakePresets.json ml/backend/ggml/ggml) | (mkdir -p "$stage/ollama-src" && tar -xf - -C "$stage/ollama-src")
  else
    log "no $mod: the payload cannot build the CUDA backend (run hack/build-ollama.sh first)"
  fi
  chmod -R u+w "$stage"
  log "compressing"
  tar -C "$stage" -cf - . | xz -T0 -6 >"$dir/payload.tar.xz"
  log "$(du -h "$dir/payload.tar.xz" | cut -f1) in $dir/payload.tar.xz"
}

run() {
  local dry=${1:-}
  work=$(mktemp -d) # global: the EXIT trap removes it
  # GPU_E2E_LOGS=DIR keeps the logs (cmake, ollama, node-agent), for a
  # device run whose folder is all that comes back.
  trap 'if [[ -n ${GPU_E2E_LOGS:-} ]]; then cp -r "$work/logs/." "$GPU_E2E_LOGS/" 2>/dev/null || true; fi; rm -rf "$work"' EXIT
  local start=$SECONDS
  xz -dc "$dir/payload.tar.xz" | tar -xf - -C "$work"
  mkdir -p "$work/logs"
  log "unpacked in $((SECONDS - start))s"
  if [[ $dry != --dry-run ]]; then
    command -v nvidia-smi >/dev/null || { log "no nvidia-smi: use --dry-run on a machine without a GPU"; exit 2; }
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >&2
    local arch
    arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d '.')
    log "building Ollama's CUDA backend for sm_$arch (about 2-3 minutes)"
    local t=$SECONDS
    (cd "$work/ollama-src" &&
      cmake --preset 'CUDA 13' -G Ninja -DCMAKE_CUDA_ARCHITECTURES="$arch-real" -DCMAKE_CUDA_FLAGS=-DGGML_CUDA_NO_FA \
        -DCMAKE_DISABLE_FIND_PACKAGE_Vulkan=ON -DCMAKE_INSTALL_PREFIX="$work/ollama" >"$work/logs/cmake.log" 2>&1 &&
      cmake --build build --target ggml-cuda --parallel "$(nproc)" >>"$work/logs/cmake.log" 2>&1 &&
      cmake --install build --component CUDA --strip >>"$work/logs/cmake.log" 2>&1) ||
      { tail -40 "$work/logs/cmake.log" >&2; exit 1; }
    # The install step leaves out the base library the CUDA one links to.
    mkdir -p "$work/ollama/lib/ollama"
    find "$work/ollama-src/build" -name 'libggml-base.so*' -exec cp -a {} "$work/ollama/lib/ollama/" \;
    log "CUDA backend built in $((SECONDS - t))s: $(find "$work/ollama/lib/ollama" -name 'libggml-cuda.so' | head -1)"
    export OLLAMA_FLASH_ATTENTION=0 # its kernels were compiled out to save build time
  fi
  "$work/bin/gpu-e2e" ${dry:+"$dry"} --assets "$work/k8s" --crds "$work/crds" --ollama "$work/ollama/bin/ollama" \
    --agent "$work/bin/node-agent" --work "$work/logs" || { failed "$work/logs"; exit 1; }
  log "done in $((SECONDS - start))s"
}

# failed shows what a failed run leaves for reading: the agent's last lines
# and Ollama's own (its HTTP log and any panic its server recovered from,
# which it answers with an empty 500).
failed() {
  echo "--- node-agent.log (last 30 lines)" >&2
  tail -30 "$1/node-agent.log" >&2
  echo "--- ollama.log (last 30 lines)" >&2
  tail -30 "$1/ollama.log" >&2 2>/dev/null || true
}

case $cmd in
pack) pack ;;
run) run "${3:-}" ;;
*) echo "usage: gpu-e2e.sh pack|run DIR [--dry-run]" >&2; exit 2 ;;
esac
