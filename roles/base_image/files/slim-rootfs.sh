#!/bin/sh
# Strip a freshly bootstrapped root file system to what debian:*-slim ships.
set -eu

rootfs=${1:?usage: slim-rootfs.sh ROOTFS}
[ -d "$rootfs/etc/apt" ] || { echo "slim-rootfs: $rootfs is not a Debian root file system" >&2; exit 2; }

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
