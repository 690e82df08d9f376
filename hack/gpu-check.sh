#!/usr/bin/env bash
# gpu-check.sh checks the node agent's NVML reader on a real NVIDIA GPU: it
# prints what the reader reports beside nvidia-smi, then allocates GPU
# memory (with PyTorch, where present) and compares again.
#
# Here (with Go): hack/gpu-check.sh builds bin/gpu-check (cgo, for NVML's
# dlopen) and runs it. On a GPU machine without Go, carry bin/gpu-check
# and run the script there: it uses the prebuilt binary.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/bin/gpu-check
if command -v go >/dev/null && [[ "${1:-}" != "--no-build" ]]; then
  (cd "$root" && CGO_ENABLED=1 go build -o "$bin" ./hack/gpu-check) || exit 1
fi
[[ -x $bin ]] || { echo "no $bin: build it where Go is, then carry it"; exit 1; }

compare() {
  echo "--- nvidia-smi"
  nvidia-smi --query-gpu=index,name,memory.used,memory.total,utilization.gpu --format=csv 2>&1 || echo "(no nvidia-smi)"
  nvidia-smi --query-compute-apps=pid,used_memory --format=csv 2>/dev/null
  echo "--- llmquota NVML reader"
  "$bin"
}

echo "=== idle"
compare
if python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
  echo "=== while a process holds 20 GiB"
  python3 -c 'import torch, time; x = torch.empty(20 * 2**30, dtype=torch.uint8, device="cuda"); x.fill_(1); torch.cuda.synchronize(); print("allocated", flush=True); time.sleep(30)' &
  holder=$!
  for _ in $(seq 60); do sleep 0.5; nvidia-smi --query-compute-apps=pid --format=csv,noheader 2>/dev/null | grep -q . && break; done
  sleep 2
  compare
  kill $holder 2>/dev/null; wait $holder 2>/dev/null
  echo "=== after it exits"
  sleep 2
  compare
else
  echo "(no PyTorch with CUDA here: no allocation step)"
fi
