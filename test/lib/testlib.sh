#!/usr/bin/env bash
# testlib.sh: shared helpers for test/suites/*.sh. Each case prints exactly one line
# "ok - NAME", "not ok - NAME" or "skip - NAME: REASON" (counted by test/run.sh).
TL_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
FLEET_BUILD=${FLEET_BUILD:-$TL_TOP/build}
FLEET_BIN=${FLEET_BIN:-$FLEET_BUILD/fleet}
TL_FAILED=0

t_ok() { echo "ok - $1"; }
t_fail() { echo "not ok - $1"; shift; [ $# -gt 0 ] && printf '    %s\n' "$@" >&2; TL_FAILED=1; }
t_skip() { echo "skip - $1: $2"; }

# t_run NAME FUNC [ARGS...]: runs FUNC in a subshell-free way; a non-zero return fails NAME.
# FUNC may print diagnostics on stderr; its stdout goes to stderr too.
t_run() {
	local name=$1 rc; shift
	echo "--- $name" >&2
	"$@" >&2
	rc=$?
	if [ $rc -eq 0 ]; then t_ok "$name"; else t_fail "$name" "(returned $rc)"; fi
}

# wait_until SECONDS CMD...: polls CMD every 0.25 s; bounded.
wait_until() {
	local t=$1 end; shift
	end=$((SECONDS + t))
	until "$@"; do
		[ $SECONDS -lt $end ] || return 1
		sleep 0.25
	done
}

# expect_eq WHAT GOT WANT
expect_eq() {
	[ "$2" = "$3" ] && return 0
	printf '%s: got [%s], want [%s]\n' "$1" "$2" "$3" >&2
	return 1
}
