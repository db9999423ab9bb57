#!/usr/bin/env bash
# Idempotent machine setup for xdp-gateway on Debian 12: Debian packages, kernel headers
# for bcc, bpffs, and the project venv (.venv) with bcc linked in. Safe to run repeatedly;
# every step checks before it acts. Needs root (it installs packages and mounts bpffs).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
venv="$here/.venv"
say() { printf 'setup: %s\n' "$*" >&2; }

[ "$(id -u)" = 0 ] || { say "must run as root (installs packages, mounts bpffs, loads BPF)"; exit 1; }

# --- Debian packages -------------------------------------------------------------------
# bcc and the kernel headers it compiles against; deploy/Containerfile installs the same.
bcc_debs=(python3-bpfcc libbpfcc linux-headers-amd64)
debs=("${bcc_debs[@]}" iproute2 nftables ethtool iperf3 netsniff-ng dnsmasq-base sockperf wrk nginx linux-perf)
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- Kernel headers for bcc -------------------------------------------------------------
# bcc compiles against /lib/modules/$(uname -r)/build. When the running kernel ships no
# headers (a custom kernel), point it at Debian's newest installed headers: bcc only needs
# them for type definitions, and the BPF ABI is stable across these versions.
kdir=/lib/modules/$(uname -r)
if [ ! -e "$kdir/source/include/linux/kconfig.h" ] || [ ! -e "$kdir/build/Makefile" ]; then
  # Debian splits headers into an arch tree (build) and a common tree (source); copy the
  # links of the newest installed Debian kernel rather than guessing its layout.
  donor=$(ls -d /lib/modules/*-amd64 2>/dev/null | sort -V | tail -n 1)
  [ -n "$donor" ] && [ -e "$donor/build" ] || { say "no Debian kernel headers found under /lib/modules"; exit 1; }
  say "kernel $(uname -r) has no headers; pointing $kdir/build and $kdir/source at those of $(basename "$donor")"
  mkdir -p "$kdir"
  ln -sfn "$(readlink -f "$donor/build")" "$kdir/build"
  ln -sfn "$(readlink -f "$donor/source")" "$kdir/source"
fi

# --- bpffs ------------------------------------------------------------------------------
if ! mount | grep -q ' /sys/fs/bpf type bpf'; then
  say "mounting bpffs at /sys/fs/bpf"
  mkdir -p /sys/fs/bpf
  mount -t bpf bpf /sys/fs/bpf
fi

# --- Python venv ------------------------------------------------------------------------
py=${PYTHON:-python3}
if [ ! -x "$venv/bin/python" ]; then
  say "creating venv at $venv"
  "$py" -m venv "$venv"
fi
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
# bcc from Debian is pure Python over ctypes (libbcc.so), so linking it in is enough.
ln -sfn /usr/lib/python3/dist-packages/bcc "$site/bcc"
# The checkout's own top-level packages that the wheel does not ship (lab/, bench/) are
# importable in the development venv, so scripts and tests need no sys.path edits.
echo "$here" > "$site/xdp-gateway-checkout.pth"

stamp="$venv/.installed-$(sha256sum "$here/pyproject.toml" | cut -c1-16)"
if [ ! -e "$stamp" ]; then
  say "installing the project and its Python dependencies into the venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q -e "$here[dev,bench]"
  rm -f "$venv"/.installed-*
  touch "$stamp"
fi
say "ready ($("$venv/bin/python" --version), bcc $("$venv/bin/python" -c 'import bcc; print(bcc.__version__)' 2>/dev/null || echo '?'))"
