#!/bin/sh
# Turn a fresh debootstrap into the root file system of debian:*-slim, packed
# for `docker import`: lay the staged container settings over it, strip it,
# tar it. One script, so the three steps cost one round trip.
set -eu

rootfs=${1:?usage: pack-rootfs.sh ROOTFS OVERLAY TARBALL}
overlay=${2:?usage: pack-rootfs.sh ROOTFS OVERLAY TARBALL}
tarball=${3:?usage: pack-rootfs.sh ROOTFS OVERLAY TARBALL}
[ -d "$rootfs/etc/apt" ] || { echo "pack-rootfs: $rootfs is not a Debian root file system" >&2; exit 2; }
[ -d "$overlay/etc" ] || { echo "pack-rootfs: $overlay holds no staged settings" >&2; exit 2; }

# The staged files keep the modes and owners they were written with.
cp -a "$overlay/." "$rootfs/"

# Files that dpkg.cfg.d/docker-slim would have excluded had it been there from the start.
find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
rm -rf "$rootfs/usr/share/man/"* "$rootfs/usr/share/info/"* "$rootfs/usr/share/groff/"* \
	"$rootfs/usr/share/lintian/overrides/"* "$rootfs/usr/share/locale/"*

# Caches and lists: images run `apt-get update` when they need packages.
rm -rf "$rootfs/var/lib/apt/lists/"* "$rootfs/var/cache/apt/"* "$rootfs/var/cache/debconf/"*-old \
	"$rootfs/var/lib/dpkg/"*-old "$rootfs/etc/apt/sources.list"
find "$rootfs/var/log" -type f -delete
rm -rf "$rootfs/tmp/"* "$rootfs/var/tmp/"*

# Docker provides these per container; the host's copies must not leak in.
rm -f "$rootfs/etc/resolv.conf" "$rootfs/etc/hostname" "$rootfs/etc/hosts"
: > "$rootfs/etc/machine-id"

tar --create --file="$tarball" --numeric-owner --xattrs --directory="$rootfs" .
