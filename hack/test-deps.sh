#!/usr/bin/env bash
# Installs from Debian what the tests and scripts run that a fresh Debian
# machine may lack: tmux (the plugin's real-terminal test), gcc (cgo: the
# node agent, the Ollama build), openssl and xz (the image and cluster
# scripts), npm (the real-cluster suite's Node app and its Node.js binary
# come from the npm registry). Nothing is installed when all are present; without root, it
# names what is missing and fails.
set -euo pipefail

declare -A package=([tmux]=tmux [gcc]=gcc [openssl]=openssl [xz]=xz-utils [npm]=npm)
missing=()
for cmd in "${!package[@]}"; do
	command -v "$cmd" >/dev/null || missing+=("${package[$cmd]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
	echo "test-deps: missing ${missing[*]}; install them (apt-get install ${missing[*]}) or run as root" >&2
	exit 1
fi
echo "test-deps: installing ${missing[*]} from Debian" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
