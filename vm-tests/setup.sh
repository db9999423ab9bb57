#!/usr/bin/env bash
# What the VM tier needs on top of scripts/setup.sh: qemu (KVM when /dev/kvm exists, else
# software emulation) and debootstrap to build the guest. Idempotent; needs root.
set -euo pipefail
# Driving a gateway that runs elsewhere (the Vagrantfile's peers VM) needs neither.
[ -z "${XG_VM_GATEWAY:-}" ] || exit 0
debs=(qemu-system-x86 debootstrap e2fsprogs)
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  printf 'vm-tests/setup: installing Debian packages: %s\n' "${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
