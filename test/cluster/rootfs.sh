#!/usr/bin/env bash
# rootfs.sh [DIR]: debootstrap a minimal Debian bookworm that boots systemd as PID 1 under
# systemd-nspawn; the shared, read-only lower layer of every test node. Cached: does nothing
# when DIR/.fleet-rootfs-ok exists. The mirror is the one this machine's apt already uses.
set -euo pipefail
PKGS=systemd,systemd-sysv,dbus,iproute2,openssh-server,curl,netbase,iptables,procps,sudo
# The cache is keyed by the package list, so adding a package builds a new rootfs.
ROOT=${1:-${FLEET_ROOTFS:-/var/cache/fleet/rootfs-bookworm-$(echo "$PKGS" | sha1sum | cut -c1-8)}}
[ -e "$ROOT/.fleet-rootfs-ok" ] && { echo "$ROOT"; exit 0; }

mirror=$(awk '$1=="URIs:" && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
[ -n "$mirror" ] || mirror=$(awk '$1=="deb" && $3 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
[ -n "$mirror" ] || { echo "rootfs.sh: no Debian mirror in the apt sources" >&2; exit 1; }

exec 9>"/tmp/fleet-rootfs.lock"; flock 9
[ -e "$ROOT/.fleet-rootfs-ok" ] && { echo "$ROOT"; exit 0; }
rm -rf "$ROOT"; mkdir -p "$(dirname "$ROOT")"
log=$(mktemp)
debootstrap --variant=minbase --include="$PKGS" bookworm "$ROOT" "$mirror" >"$log" 2>&1 ||
	{ tail -20 "$log" >&2; rm -f "$log"; exit 1; }
rm -f "$log"
rm -rf "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/lib/apt/lists/*
# Every node writes its own machine ID and host key into its overlay.
: >"$ROOT/etc/machine-id"; rm -f "$ROOT/var/lib/dbus/machine-id" "$ROOT"/etc/ssh/ssh_host_*
for u in apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer \
	fstrim.timer systemd-tmpfiles-clean.timer e2scrub_reap.service console-getty.service \
	getty@tty1.service getty.target systemd-networkd-wait-online.service; do
	ln -sf /dev/null "$ROOT/etc/systemd/system/$u"
done
mkdir -p "$ROOT/etc/systemd/journald.conf.d" "$ROOT/root/.ssh"
printf '[Journal]\nStorage=volatile\nRuntimeMaxUse=16M\n' >"$ROOT/etc/systemd/journald.conf.d/fleet-test.conf"
chmod 700 "$ROOT/root/.ssh"
printf 'PermitRootLogin prohibit-password\nUseDNS no\nHostKey /etc/ssh/ssh_host_ed25519_key\n' \
	>"$ROOT/etc/ssh/sshd_config.d/fleet-test.conf"
touch "$ROOT/.fleet-rootfs-ok"
echo "$ROOT"
