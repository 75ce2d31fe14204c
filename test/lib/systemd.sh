#!/usr/bin/env bash
# systemd.sh: a real `systemd --user` manager for the agent tests, on hosts whose PID 1 is not
# systemd. Runs as root in a private mount namespace (tmpfs on /run/systemd with the
# /run/systemd/system marker the manager insists on, its own XDG_RUNTIME_DIR and HOME) inside a
# cgroup of its own; the host is left untouched.
#
# As a script:
#   test/lib/systemd.sh start NAME  -> prints the path of NAME's env file (source it): exports
#                                      XDG_RUNTIME_DIR, FLEET_TEST_SD_PRIVATE (the manager's
#                                      private socket address), FLEET_TEST_SD_PID (manager PID),
#                                      and DBUS_SESSION_BUS_ADDRESS when a user dbus came up
#   test/lib/systemd.sh stop NAME   -> stops it (manager, its units, its cgroups)
#   test/lib/systemd.sh check       -> exit 0 if a manager can run here, else 1 with the reason
# Exit status 2 from start/check means "cannot run here" (the reason is on stderr): tests skip.
# Sourced (by test suites):
#   sd_start [NAME]  starts one and exports its environment into the caller; on failure returns
#                    non-zero with the reason in $SD_WHY
#   sd_stop          stops the one sd_start started
# State lives in $FLEET_TEST_STATE/systemd/NAME (default /tmp/fleet-test; for sourced use, as it
# was when sd_start ran); only PIDs recorded there (the manager) or found in its own cgroup are
# ever signalled.

# State of instance NAME; sourced use pins the root at sd_start time (_SD_ROOT), so that
# `FLEET_TEST_STATE=X sd_start` and a later plain `sd_stop` agree.
_sd_state() { echo "${_SD_ROOT:-${FLEET_TEST_STATE:-/tmp/fleet-test}/systemd}/$1"; }

_sd_systemd_bin() {
	local p
	for p in /lib/systemd/systemd /usr/lib/systemd/systemd; do
		[ -x "$p" ] && { echo "$p"; return 0; }
	done
	return 1
}

# The cgroup hierarchies to create the manager's cgroup in: hybrid hosts need both the cgroup2
# tree and the name=systemd v1 tree; pure cgroup2 hosts only /sys/fs/cgroup.
_sd_hierarchies() {
	if [ "$(stat -fc %T /sys/fs/cgroup/unified 2>/dev/null)" = cgroup2fs ]; then
		echo /sys/fs/cgroup/unified
		[ -d /sys/fs/cgroup/systemd ] && echo /sys/fs/cgroup/systemd
	elif [ "$(stat -fc %T /sys/fs/cgroup 2>/dev/null)" = cgroup2fs ]; then
		echo /sys/fs/cgroup
	fi
}

# Prints why a manager cannot run here; returns 0 when it can.
_sd_check() {
	[ "$(id -u)" = 0 ] || { echo "needs root (private mount namespace, cgroups)"; return 1; }
	_sd_systemd_bin >/dev/null || { echo "no systemd binary"; return 1; }
	command -v unshare >/dev/null || { echo "no unshare"; return 1; }
	command -v systemctl >/dev/null || { echo "no systemctl"; return 1; }
	[ -n "$(_sd_hierarchies)" ] || { echo "no usable cgroup hierarchy"; return 1; }
	[ -w "$(_sd_hierarchies | head -1)" ] || { echo "cgroup hierarchy not writable"; return 1; }
	return 0
}

_sd_alive() { [ -r "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }

_sd_cgroup_rel() { echo "fleet-test.slice/fleet-test-$1.slice"; }

_sd_start() {
	local name=$1 s why bin h cg rel i
	why=$(_sd_check) || { echo "$why" >&2; return 2; }
	[[ $name =~ ^[A-Za-z0-9_-]+$ ]] || { echo "bad instance name '$name'" >&2; return 1; }
	s=$(_sd_state "$name")
	if [ -f "$s/pid" ] && _sd_alive "$(cat "$s/pid")"; then
		echo "systemd instance $name already running" >&2; return 1
	fi
	bin=$(_sd_systemd_bin)
	rm -rf "$s"
	mkdir -p "$s/run" "$s/home/.config/systemd/user"
	chmod 700 "$s/run"
	: >"$s/manager.log"
	[ ${#s} -lt 70 ] || { echo "state path $s too long for a unix socket" >&2; return 1; }
	rel=$(_sd_cgroup_rel "$name")
	: >"$s/cgroups"
	for h in $(_sd_hierarchies); do
		cg=$h/$rel/user@0.service
		mkdir -p "$cg" || { echo "cannot create cgroup $cg" >&2; return 2; }
		echo "$h/$rel" >>"$s/cgroups"
	done
	{
		echo "export XDG_RUNTIME_DIR=$s/run"
		echo "export FLEET_TEST_SD_PRIVATE=unix:path=$s/run/systemd/private"
	} >"$s/env"

	# The manager must be the namespace's first process in its cgroup; it is exec'ed by the
	# same process unshare started, so $! is its PID.
	S=$s BIN=$bin CGS="$(sed "s|\$|/user@0.service|" "$s/cgroups" | tr '\n' ' ')" \
		unshare --mount --propagation private bash -c '
		set -e
		mount -t tmpfs -o mode=755 fleet-test-runsd /run/systemd
		mkdir -p /run/systemd/system
		mount --bind "$S/manager.log" /dev/console
		for cg in $CGS; do echo $$ > "$cg/cgroup.procs"; done
		export XDG_RUNTIME_DIR=$S/run HOME=$S/home XDG_CONFIG_HOME=$S/home/.config
		unset DBUS_SESSION_BUS_ADDRESS NOTIFY_SOCKET LISTEN_FDS LISTEN_PID
		exec "$BIN" --user --log-target=console --log-level=info
	' >>"$s/manager.log" 2>&1 </dev/null &
	echo $! >"$s/pid"

	for i in $(seq 200); do
		if env -u DBUS_SESSION_BUS_ADDRESS XDG_RUNTIME_DIR="$s/run" systemctl --user is-active -q default.target 2>/dev/null; then
			# A user dbus (socket-activated by the manager) is optional: the agent can use
			# the private socket instead.
			[ -S "$s/run/bus" ] && echo "export DBUS_SESSION_BUS_ADDRESS=unix:path=$s/run/bus" >>"$s/env"
			echo "export FLEET_TEST_SD_PID=$(cat "$s/pid")" >>"$s/env"
			echo "$s/env"
			return 0
		fi
		_sd_alive "$(cat "$s/pid")" || break
		sleep 0.05
	done
	echo "systemd --user did not come up; its log:" >&2
	tail -n 20 "$s/manager.log" >&2
	_sd_stop "$name"
	return 2
}

_sd_stop() {
	local name=$1 s p cg i
	s=$(_sd_state "$name")
	[ -d "$s" ] || return 0
	if [ -f "$s/pid" ]; then
		p=$(cat "$s/pid")
		if _sd_alive "$p"; then
			# SIGTERM: a user manager stops its units and exits (about a second).
			kill "$p" 2>/dev/null
			for i in $(seq 100); do _sd_alive "$p" || break; sleep 0.1; done
			_sd_alive "$p" && kill -9 "$p" 2>/dev/null
		fi
		rm -f "$s/pid"
	fi
	# Leftovers in its cgroups (units that ignored SIGTERM) are ours: kill them, then the tree.
	if [ -f "$s/cgroups" ]; then
		while read -r cg; do
			[ -d "$cg" ] || continue
			if [ -e "$cg/cgroup.kill" ]; then
				echo 1 >"$cg/cgroup.kill" 2>/dev/null
			else
				find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null | while read -r p; do kill -9 "$p" 2>/dev/null; done
			fi
		done <"$s/cgroups"
		for i in $(seq 50); do
			local left=0
			while read -r cg; do
				[ -d "$cg" ] || continue
				find "$cg" -depth -type d -exec rmdir {} \; 2>/dev/null
				[ -d "$cg" ] && left=1
				rmdir "$(dirname "$cg")" 2>/dev/null # fleet-test.slice, when no other instance uses it
			done <"$s/cgroups"
			[ $left = 0 ] && break
			sleep 0.1
		done
	fi
	rm -rf "$s"
	return 0
}

# ---- sourced use ----
SD_WHY=
SD_NAME=
_SD_ROOT=
sd_start() {
	local env rc
	SD_NAME=${1:-sd$$}
	_SD_ROOT=${FLEET_TEST_STATE:-/tmp/fleet-test}/systemd
	mkdir -p "$_SD_ROOT"
	env=$(_sd_start "$SD_NAME" 2>"$(_sd_state "$SD_NAME").err")
	rc=$?
	if [ $rc -ne 0 ]; then
		SD_WHY=$(tr '\n' ' ' <"$(_sd_state "$SD_NAME").err" 2>/dev/null)
		rm -f "$(_sd_state "$SD_NAME").err"
		SD_NAME=
		_SD_ROOT=
		return $rc
	fi
	rm -f "$(_sd_state "$SD_NAME").err"
	# shellcheck disable=SC1090
	. "$env"
	return 0
}
sd_stop() {
	[ -n "$SD_NAME" ] || return 0
	_sd_stop "$SD_NAME"
	SD_NAME=
	_SD_ROOT=
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	set -uo pipefail
	case "${1:-}" in
	start)
		[ -n "${2:-}" ] || { echo "usage: $0 start NAME" >&2; exit 1; }
		mkdir -p "$(dirname "$(_sd_state "$2")")"
		_sd_start "$2"
		;;
	stop)
		[ -n "${2:-}" ] || { echo "usage: $0 stop NAME" >&2; exit 1; }
		_sd_stop "$2"
		;;
	check)
		why=$(_sd_check) || { echo "$why" >&2; exit 2; }
		;;
	*)
		echo "usage: $0 start NAME | stop NAME | check" >&2
		exit 1
		;;
	esac
fi
