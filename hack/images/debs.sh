#!/usr/bin/env bash
# debs.sh downloads the Debian packages the images take files from (CA
# certificates; glibc and the C++ runtime for cgo binaries) into a cache
# folder, once: the way distroless images are made, from the packages
# themselves rather than from the build machine's installed files.
# Usage: hack/images/debs.sh DIR PACKAGE...
set -euo pipefail
dir=$1; shift
mkdir -p "$dir"
missing=()
for p in "$@"; do compgen -G "$dir/${p}_*.deb" >/dev/null || missing+=("$p"); done
((${#missing[@]})) || exit 0
cd "$dir"
# apt-get download needs current package lists; a fresh machine may have none.
apt-get download "${missing[@]}" >/dev/null 2>&1 || { apt-get update -qq && apt-get download "${missing[@]}"; }
