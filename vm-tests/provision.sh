#!/usr/bin/env bash
# Provision a Debian 12 system as an xdp-gateway gateway: Debian packages (bcc, a kernel
# with its headers, iproute2), a venv at /opt/xdp-gateway with the project's runtime
# dependencies from PyPI, and optionally the project itself. One script for both users:
#
#   vm-tests/build-guest.sh   runs it in a debootstrap chroot (--deps-only: the tests
#                             install the tree under test at boot)
#   Vagrantfile               runs it in the gateway VM with the synced repository
#
#   provision.sh [--deps-only] PROJECT    PROJECT: a source tree (pyproject.toml) or wheel
#
# Idempotent; needs root and network access to the Debian archive and PyPI.
set -euo pipefail

deps_only=0
if [ "${1:-}" = --deps-only ]; then deps_only=1; shift; fi
project=${1:?usage: provision.sh [--deps-only] PROJECT_DIR_OR_WHEEL}
venv=/opt/xdp-gateway
say() { printf 'provision: %s\n' "$*" >&2; }

[ "$(id -u)" = 0 ] || { say "must run as root"; exit 1; }
export DEBIAN_FRONTEND=noninteractive

# --- Debian packages -------------------------------------------------------------------
# bcc compiles the data path at load time, so the gateway needs headers for the kernel it
# runs: those of the running kernel when Debian has them (a VM booted from a Debian box),
# else Debian's current kernel and its headers (a chroot, which is booted later).
debs=(python3 python3-venv python3-bpfcc libbpfcc iproute2 ethtool kmod procps ca-certificates)
apt-get update -qq
if [ -d "/lib/modules/$(uname -r)/kernel" ] && apt-cache show "linux-headers-$(uname -r)" >/dev/null 2>&1; then
  debs+=("linux-headers-$(uname -r)")
else
  debs+=(linux-image-amd64 linux-headers-amd64)
fi
say "installing ${debs[*]}"
apt-get install -y -qq --no-install-recommends "${debs[@]}" >/dev/null

# --- venv with the runtime dependencies --------------------------------------------------
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
# bcc from Debian is pure Python over ctypes (libbcc.so): linking it in is enough.
ln -sfn /usr/lib/python3/dist-packages/bcc "$site/bcc"

if [ -d "$project" ]; then
  pyproject="$project/pyproject.toml"
  # The runtime dependencies alone, read from pyproject.toml, so that a cached system
  # can take any later tree of the project without reinstalling them.
  mapfile -t requirements < <(python3 -c 'import sys, tomllib
print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]))' "$pyproject")
  say "installing ${#requirements[@]} runtime dependencies into $venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "${requirements[@]}"
fi
if [ "$deps_only" = 0 ]; then
  say "installing the project from $project"
  if [ -d "$project" ]; then
    # Build from a copy: an in-tree build would write build/ into the (synced) checkout.
    copy=$(mktemp -d)
    tar -C "$project" --exclude=.git --exclude=.venv --exclude=build --exclude='*.egg-info' -cf - . | tar -C "$copy" -xf -
    "$venv/bin/pip" install -q --disable-pip-version-check "$copy"
    rm -rf "$copy"
  else
    "$venv/bin/pip" install -q --disable-pip-version-check "$project"
  fi
  ln -sfn "$venv/bin/gwctl" /usr/local/bin/gwctl
fi

# --- kernel settings the gateway needs at boot -------------------------------------------
mkdir -p /etc/sysctl.d
cat > /etc/sysctl.d/60-xdp-gateway.conf <<'EOF'
net.ipv4.ip_forward = 1
net.ipv6.conf.all.forwarding = 1
net.ipv4.conf.all.rp_filter = 0
net.ipv4.conf.default.rp_filter = 0
EOF
kernels=$(dpkg-query -W -f='${db:Status-Abbrev} ${Package} ${Version}\n' 'linux-image-[0-9]*' 2>/dev/null | awk '$1 == "ii" {printf "%s %s ", $2, $3}')
say "done: $("$venv/bin/python" --version), ${kernels:-no Debian kernel package}"
