#!/usr/bin/env bash
# reproducible.sh checks that image digests depend only on the inputs: it
# builds the images a second time, into another folder, from copies of the
# binaries and packages with other file times, and compares the digests
# with those of `make images`.
# Usage: hack/images/reproducible.sh BIN_DIR DEB_DIR IMAGES_DIR -- ARGS...   (ARGS: the tool's --version, --revision, ...)
set -euo pipefail
bin=$1 debs=$2 images=$3; shift 4
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/bin" && cp "$bin"/{manager,node-agent,provider-emulator,gateway} "$tmp/bin/" && cp -r "$debs" "$tmp/debs"
touch -d '2001-02-03 04:05:06' "$tmp"/bin/* "$tmp"/debs/*
go run ./hack/images --bin "$tmp/bin" --debs "$tmp/debs" --out "$tmp/out" "$@" >/dev/null
status=0 compared=0
for d in "$images"/*.digest; do
  [[ -f $d ]] || continue
  n=$(basename "$d")
  if [[ ! -f $tmp/out/$n ]]; then echo "NOT reproducible: ${n%.digest}: the second build made no such image"; status=1; continue; fi
  compared=$((compared + 1))
  if cmp -s "$d" "$tmp/out/$n"; then echo "reproducible: ${n%.digest} $(cat "$d")"
  else echo "NOT reproducible: ${n%.digest}: $(cat "$d") then $(cat "$tmp/out/$n")"; status=1; fi
done
# No digest compared is no check at all: say so and fail.
if (( compared == 0 )); then echo "reproducible.sh: no image digests in $images to compare (run make images first)" >&2; exit 1; fi
exit $status
