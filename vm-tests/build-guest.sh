#!/usr/bin/env bash
# Build (or reuse) the gateway guest of the VM tier: a Debian 12 root file system made by
# debootstrap and provisioned by vm-tests/provision.sh (Debian's own kernel, bcc, the
# project's runtime dependencies), as a raw ext4 image plus the kernel and initrd to boot
# it with. Everything comes from the Debian archive and PyPI.
#
#   build-guest.sh            prints the directory holding vmlinuz, initrd.img, rootfs.img
#
# Two cached layers under $XG_VM_CACHE (default /var/cache/xdp-gateway-vm), each in a
# directory named by a hash of its inputs, so that a second run costs nothing:
#   base-KEY   the provisioned root file system (debootstrap, Debian packages): keyed by
#              these scripts; minutes to build
#   guest-KEY  the bootable image: the base with the project's current runtime
#              dependencies (provision.sh again, which only adds what is missing); keyed
#              by the base and pyproject.toml's dependency list
# A failed build leaves nothing behind. Older images are pruned (the newest two stay).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
cache=${XG_VM_CACHE:-/var/cache/xdp-gateway-vm}
mirror=${XG_DEBIAN_MIRROR:-http://deb.debian.org/debian}
say() { printf 'build-guest: %s\n' "$*" >&2; }

[ "$(id -u)" = 0 ] || { say "must run as root (debootstrap, chroot)"; exit 1; }

deps=$(python3 -c 'import sys, tomllib
print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]))' "$root/pyproject.toml")
base_key=$(cat "$here/build-guest.sh" "$here/provision.sh" "$here/guest/init" <(echo "$mirror") | sha256sum | cut -c1-16)
key=$(printf '%s\n%s\n' "$base_key" "$deps" | sha256sum | cut -c1-16)
base="$cache/base-$base_key"
out="$cache/guest-$key"
if [ -e "$out/rootfs.img" ]; then
  say "cached: $out"
  touch "$out"
  echo "$out"
  exit 0
fi

for tool in debootstrap mkfs.ext4; do
  command -v "$tool" >/dev/null || { say "needs $tool (vm-tests/setup.sh installs it)"; exit 1; }
done
mkdir -p "$cache"
work=$(mktemp -d "$cache/build.XXXXXX")
mounted=()
unmount_all() {
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[i]}" 2>/dev/null || true; done
  mounted=()
}
cleanup() {
  unmount_all
  # Never delete through a mount that is still there (the chroot binds the host's /dev).
  if grep -q " $work/" /proc/mounts; then say "mounts remain under $work; left in place"
  else rm -rf --one-file-system "$work"; fi
}
trap cleanup EXIT
started=$(date +%s)

# provision ROOTFS: run provision.sh --deps-only in the chroot, for the current dependencies.
provision() {
  local rootfs=$1
  for fs in proc sys dev; do
    mount --rbind "/$fs" "$rootfs/$fs"
    mount --make-rslave "$rootfs/$fs"
    mounted+=("$rootfs/$fs")
  done
  cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
  # pip in the chroot trusts what pip on the host trusts (a TLS-inspecting proxy's CA, say).
  cp "${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}" "$rootfs/tmp/host-ca.crt"
  mkdir -p "$rootfs/tmp/xg-src"
  cp "$root/pyproject.toml" "$rootfs/tmp/xg-src/"
  cp "$here/provision.sh" "$rootfs/tmp/provision.sh"
  printf '#!/bin/sh\nexit 101\n' > "$rootfs/usr/sbin/policy-rc.d"  # no service starts in a chroot
  chmod +x "$rootfs/usr/sbin/policy-rc.d"
  chroot "$rootfs" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
    PIP_CERT=/tmp/host-ca.crt ${PIP_INDEX_URL:+PIP_INDEX_URL=$PIP_INDEX_URL} \
    bash /tmp/provision.sh --deps-only /tmp/xg-src
  rm -rf "$rootfs/tmp/xg-src" "$rootfs/tmp/provision.sh" "$rootfs/tmp/host-ca.crt" "$rootfs/usr/sbin/policy-rc.d" \
         "$rootfs/var/cache/apt/archives/"*.deb "$rootfs/var/lib/apt/lists/"* "$rootfs/root/.cache"
  unmount_all
}

if [ ! -d "$base" ]; then
  rootfs="$work/base"
  say "debootstrap bookworm into $rootfs"
  debootstrap --variant=minbase --include=ca-certificates bookworm "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }
  cat > "$rootfs/etc/apt/sources.list" <<EOF
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb ${mirror%/debian}/debian-security bookworm-security main
EOF
  # The initramfs needs only what finds the root disk (virtio-blk, ext4): a short list
  # builds in seconds instead of minutes and boots faster under emulation.
  mkdir -p "$rootfs/etc/initramfs-tools/conf.d"
  printf '%s\n' virtio_pci virtio_blk ext4 > "$rootfs/etc/initramfs-tools/modules"
  echo MODULES=list > "$rootfs/etc/initramfs-tools/conf.d/xg-gateway.conf"
  say "provisioning the base in a chroot (vm-tests/provision.sh --deps-only)"
  provision "$rootfs"
  install -m 0755 "$here/guest/init" "$rootfs/sbin/xg-init"
  echo xg-gateway > "$rootfs/etc/hostname"
  version=$(ls "$rootfs"/boot/vmlinuz-* | sort -V | tail -n 1); version=${version##*/vmlinuz-}
  # Drivers and documents no gateway VM uses: a smaller image builds and copies faster.
  rm -rf "$rootfs/lib/modules/$version/kernel/drivers/"{gpu,media,infiniband,staging,net/wireless,bluetooth,iio,hid} \
         "$rootfs/lib/modules/$version/kernel/sound" "$rootfs/usr/share/doc" "$rootfs/usr/share/man" \
         "$rootfs/usr/share/locale"
  echo "$(( $(date +%s) - started ))" > "$rootfs/.xg-base-seconds"
  rm -rf "$cache"/base-*
  mv "$rootfs" "$base"
  say "base built in $(cat "$base/.xg-base-seconds") s: $base"
fi

say "image: the base with the current runtime dependencies"
rootfs="$work/rootfs"
cp -a "$base" "$rootfs"
provision "$rootfs"
kernel=$(ls "$rootfs"/boot/vmlinuz-* | sort -V | tail -n 1)
version=${kernel##*/vmlinuz-}
mkdir -p "$work/out"
cp "$kernel" "$work/out/vmlinuz"
cp "$rootfs/boot/initrd.img-$version" "$work/out/initrd.img"
echo "$version" > "$work/out/kernel-version"
size_mb=$(( $(du -sm "$rootfs" | cut -f1) * 3 / 2 + 256 ))
mkfs.ext4 -q -L xg-root -d "$rootfs" "$work/out/rootfs.img" "${size_mb}M"
echo "$(( $(date +%s) - started ))" > "$work/out/build-seconds"
cp "$base/.xg-base-seconds" "$work/out/base-seconds"
mv "$work/out" "$out"
# Keep the newest two images (two branches with different dependencies do not rebuild
# each other's); the base stays.
ls -dt "$cache"/guest-* | tail -n +3 | xargs -r rm -rf --one-file-system
say "image built in $(cat "$out/build-seconds") s (${size_mb} MiB, kernel $version): $out"
echo "$out"
