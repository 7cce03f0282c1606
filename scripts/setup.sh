#!/usr/bin/env bash
# Installs the Debian packages libmoe needs, if any are missing.
# As root: apt-get install. Otherwise: prints the exact command to run.
# usage: scripts/setup.sh [EXTRA-PACKAGE ...]
set -eu
pkgs=(build-essential pkg-config libopenblas-dev libhdf5-dev hdf5-tools
      libcunit1-dev gnuplot-nox libopenmpi-dev openmpi-bin libxsmm-dev "$@")
missing=()
for p in "${pkgs[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [ "$status" = "install ok installed" ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "setup: missing Debian packages: ${missing[*]}" >&2
if [ "$(id -u)" -ne 0 ]; then
    echo "setup: run as root: apt-get update && apt-get install -y ${missing[*]}" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
echo "setup: installed ${missing[*]}" >&2
