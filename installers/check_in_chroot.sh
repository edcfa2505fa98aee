#!/usr/bin/env bash
# Acceptance check of a bundle on a pristine Debian 12 base system with no network (root, Debian build machine).
#
#   sudo installers/check_in_chroot.sh BUNDLE_DIR [CHROOT_DIR]
#
# BUNDLE_DIR is an unpacked bundle (build_bundle.py --keep-staging leaves one). CHROOT_DIR (default
# /work/bundles/chroot) is made with 'debootstrap bookworm' when missing: the default debootstrap variant, i.e.
# priority required + important, which is what build_bundle.py assumes a workstation has. The bundle is
# hard-linked into the chroot and installed there as root (system install, /opt/dvan) inside a new network
# namespace (unshare -n: no interfaces at all), so every Debian package and wheel must come from the bundle.
# The chroot keeps the result; delete it afterwards (rm -rf, after the umounts below ran).
set -euo pipefail
BUNDLE="$(cd "${1:?usage: check_in_chroot.sh BUNDLE_DIR [CHROOT_DIR]}" && pwd -P)"
ROOTFS="${2:-/work/bundles/chroot}"
[ "$(id -u)" = 0 ] || { echo "needs root (chroot, unshare)" >&2; exit 1; }

if [ ! -x "$ROOTFS/bin/bash" ]; then
  command -v debootstrap >/dev/null || { echo "apt-get install debootstrap first" >&2; exit 1; }
  debootstrap --arch=amd64 bookworm "$ROOTFS" http://deb.debian.org/debian
fi

rm -rf "$ROOTFS/root/bundle"
cp -al "$BUNDLE" "$ROOTFS/root/bundle" 2>/dev/null || cp -a "$BUNDLE" "$ROOTFS/root/bundle"
for fs in proc sys dev; do mountpoint -q "$ROOTFS/$fs" || mount --rbind "/$fs" "$ROOTFS/$fs"; done
trap 'for fs in dev sys proc; do umount -lR "$ROOTFS/$fs" 2>/dev/null || true; done' EXIT

echo "chroot: Debian $(cat "$ROOTFS/etc/debian_version"), $(chroot "$ROOTFS" dpkg-query -W -f='${Status}\n' | grep -c 'install ok installed') packages; network: none"
start=$(date +%s)
rc=0
unshare -n chroot "$ROOTFS" /usr/bin/env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  LANG=C.UTF-8 TERM=dumb QT_QPA_PLATFORM=offscreen bash /root/bundle/install.sh "${@:3}" || rc=$?
echo "chroot: install.sh exited $rc after $(( $(date +%s) - start )) s"
echo "chroot: installed size $(du -sh "$ROOTFS/opt/dvan" | cut -f1); Debian packages now $(chroot "$ROOTFS" dpkg-query -W -f='${Status}\n' | grep -c 'install ok installed')"
exit "$rc"
