#!/usr/bin/env bash
# daemon.sh: fleetd itself, end to end: command line, configuration errors, registration in the
# real etcd ($FLEET_TEST_ETCD, a key prefix per case), the API on a private unix socket, SIGHUP
# reload, SIGUSR1 dump, SIGTERM shutdown, duplicate machine IDs, the heartbeat monitor (against a
# private etcd we can freeze), socket activation and the standalone roles. The agent drives a
# real `systemd --user` manager (test/lib/systemd.sh). Every process started here is recorded
# and killed by PID on exit.
. "$(dirname "$0")/../lib/testlib.sh"

T=$(mktemp -d /tmp/fleet-daemon.XXXXXX)
PIDS=()
OWN_ETCD=
SD_STARTED=
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
	if [ -n "$OWN_ETCD" ]; then
		FLEET_TEST_STATE=$T/etcd "$TL_TOP/test/lib/etcd.sh" stop "$OWN_ETCD" >/dev/null 2>&1
	fi
	[ -n "$SD_STARTED" ] && sd_stop >/dev/null 2>&1
	rm -rf "$T"
}
trap cleanup EXIT

ETCD=${FLEET_TEST_ETCD:-}
ETCD1=${ETCD%%,*}
N=0
# A fresh key prefix per case, so cases never see each other's machines.
new_prefix() { N=$((N + 1)); PREFIX=/fleet-test-daemon/$$-$N/; }

# ---- systemd --user for the agent ----
SD_WHY=
sd_start() { SD_WHY="test/lib/systemd.sh not available"; return 1; }
sd_stop() { :; }
if [ -f "$TL_TOP/test/lib/systemd.sh" ]; then
	# shellcheck source=../lib/systemd.sh
	. "$TL_TOP/test/lib/systemd.sh"
fi

# ---- helpers ----
etcd_node() { curl -fs --max-time 2 "$2/v2/keys${1}"; } # KEY ENDPOINT -> JSON
machine_key() { echo "${PREFIX}machines/$1/object"; }
machine_value() { etcd_node "$(machine_key "$1")" "${2:-$ETCD1}" | jq -r .node.value; }
machine_ttl() { etcd_node "$(machine_key "$1")" "${2:-$ETCD1}" | jq -r .node.ttl; }
machine_exists() { etcd_node "$(machine_key "$1")" "${2:-$ETCD1}" >/dev/null; }

# api NAME PATH -> "CODE BODY"
api() {
	local body code
	body=$(curl -s --max-time 5 --unix-socket "$T/$1.sock" -o - -w '\n%{http_code}' "http://fleet$2")
	code=${body##*$'\n'}
	echo "$code ${body%$'\n'*}"
}
api_code() { local r; r=$(api "$1" "$2"); echo "${r%% *}"; }

new_id() { od -An -tx1 -N16 /dev/urandom | tr -d ' \n'; }

# write_conf NAME [EXTRA LINES...]: config for daemon NAME in $T/NAME.conf
write_conf() {
	local name=$1; shift
	mkdir -p "$T/$name.units"
	{
		echo "etcd_servers=${CONF_ETCD:-$ETCD}"
		echo "etcd_key_prefix=$PREFIX"
		echo "agent_ttl=${CONF_TTL:-3s}"
		echo "engine_reconcile_interval=1"
		echo "public_ip=10.1.2.3"
		echo "metadata=role=web,az=1"
		echo "api_listen=unix:$T/$name.sock"
		echo "units_directory=$T/$name.units/"
		echo "systemd_user=true"
		printf '%s\n' "$@"
	} >"$T/$name.conf"
}

# start_fleet NAME ID [APPLET]: runs `fleet APPLET` (default daemon) with $T/NAME.conf.
start_fleet() {
	local name=$1 id=$2 applet=${3:-daemon}
	echo "$id" >"$T/$name.machine-id"
	rm -f "$T/$name.sock"
	FLEET_MACHINE_ID_FILE=$T/$name.machine-id "$FLEET_BIN" "$applet" -config "$T/$name.conf" \
		>"$T/$name.log" 2>&1 </dev/null &
	PIDS+=($!)
	eval "PID_$name=$!"
}
pid_of() { eval "echo \$PID_$1"; }
alive() { kill -0 "$(pid_of "$1")" 2>/dev/null; }
logged() { grep -qF -- "$2" "$T/$1.log"; }
wait_logged() { wait_until "${3:-10}" logged "$1" "$2" || { echo "no '$2' in $1's log"; tail -20 "$T/$1.log"; return 1; }; }

# stop_fleet NAME [SIGNAL] -> exit status of the daemon (124 if it did not exit in 60 s)
stop_fleet() {
	local pid
	pid=$(pid_of "$1")
	kill -"${2:-TERM}" "$pid" 2>/dev/null
	for _ in $(seq 600); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -0 "$pid" 2>/dev/null && { kill -9 "$pid"; wait "$pid" 2>/dev/null; return 124; }
	wait "$pid"
}

wait_api() { wait_until "${3:-15}" eval '[ "$(api_code '"$1"' '"$2"')" = 200 ]' || { echo "API of $1 never answered 200 on $2: $(api "$1" "$2")"; tail -20 "$T/$1.log"; return 1; }; }

# ---- cases without etcd ----
c_version_help() {
	local out rc
	for a in -version --version -version=true version; do
		out=$("$FLEET_BIN" daemon $a) || return 1
		expect_eq "daemon $a" "$out" "fleetd version 1.0.0" || return 1
	done
	out=$("$FLEET_BUILD/fleetd" -version 2>&1) && expect_eq "fleetd -version" "$out" "fleetd version 1.0.0" || return 1
	out=$("$FLEET_BIN" daemon --help) || return 1
	grep -q "fleetd is the server component of fleet" <<<"$out" || { echo "$out"; return 1; }
	grep -q -- "-config" <<<"$out" || return 1
	"$FLEET_BIN" daemon -h >/dev/null || return 1
	out=$("$FLEET_BIN" daemon list-units 2>&1)
	rc=$?
	expect_eq "positional rc" "$rc" 1 || return 1
	grep -q "takes no arguments. Did you mean to invoke fleetctl instead?" <<<"$out" || { echo "$out"; return 1; }
	out=$("$FLEET_BIN" daemon -no-such-flag 2>&1)
	rc=$?
	expect_eq "unknown flag rc" "$rc" 2 || return 1
	grep -q "flag provided but not defined: -no-such-flag" <<<"$out" || return 1
	out=$("$FLEET_BIN" agent -version) && expect_eq "agent -version" "$out" "fleet agent version 1.0.0"
}

c_bad_config() {
	local out rc
	printf 'verbosity=1\n# fine\n\nthis line is broken\n' >"$T/bad.conf"
	out=$("$FLEET_BIN" daemon -config "$T/bad.conf" 2>&1)
	rc=$?
	[ $rc -ne 0 ] || { echo "exit 0 on a syntax error"; return 1; }
	grep -qF "iniparser: syntax error at '$T/bad.conf:4'." <<<"$out" || { echo "$out"; return 1; }
	out=$("$FLEET_BIN" daemon -config "$T/missing.conf" 2>&1) && return 1
	grep -qF "$T/missing.conf" <<<"$out" || { echo "$out"; return 1; }
	out=$("$FLEET_BIN" daemon -config "$T" 2>&1) && return 1
	grep -q "directory" <<<"$out" || { echo "$out"; return 1; }
	printf 'agent_ttl=thirty\n' >"$T/ttl.conf"
	out=$("$FLEET_BIN" daemon -config="$T/ttl.conf" 2>&1) && return 1
	grep -q "Failed creating Server: invalid agent_ttl" <<<"$out" || { echo "$out"; return 1; }
	# The environment overrides the file, even to make it invalid.
	printf 'agent_ttl=30s\n' >"$T/ttl2.conf"
	out=$(FLEET_AGENT_TTL= "$FLEET_BIN" daemon -config "$T/ttl2.conf" 2>&1) && return 1
	grep -q "FLEET_AGENT_TTL" <<<"$out" || { echo "$out"; return 1; }
	echo "$(new_id)" >"$T/none.id"
	printf 'etcd_servers=\n' >"$T/empty.conf"
	out=$(FLEET_MACHINE_ID_FILE=$T/none.id "$FLEET_BIN" daemon -config "$T/empty.conf" 2>&1) && return 1
	grep -q "No etcd servers" <<<"$out" || { echo "$out"; return 1; }
	: >"$T/empty.id"
	out=$(FLEET_MACHINE_ID_FILE=$T/empty.id "$FLEET_BIN" daemon -config "$T/ttl2.conf" 2>&1) && return 1
	grep -q "unable to determine local machine ID" <<<"$out" || { echo "$out"; return 1; }
}

# ---- cases with etcd ----
ID_A=
c_register() {
	local v ttl want
	new_prefix
	ID_A=$(new_id)
	write_conf a
	start_fleet a "$ID_A"
	wait_until 15 machine_exists "$ID_A" || { echo "machine never registered"; tail -20 "$T/a.log"; return 1; }
	v=$(machine_value "$ID_A")
	want="{\"ID\":\"$ID_A\",\"PublicIP\":\"10.1.2.3\",\"Metadata\":{\"az\":\"1\",\"role\":\"web\"},\"Capabilities\":{\"DISABLE_ENGINE\":false,\"GRPC\":false},\"Version\":\"1.0.0\"}"
	expect_eq "machine object" "$v" "$want" || return 1
	ttl=$(machine_ttl "$ID_A")
	[ "$ttl" -ge 1 ] && [ "$ttl" -le 3 ] || { echo "ttl $ttl, want 1..3"; return 1; }
	logged a "Starting fleetd version 1.0.0" && logged a "Using config file $T/a.conf" || return 1
}

c_api() {
	local r
	wait_api a /fleet/v1/machines || return 1
	r=$(api a /fleet/v1/machines)
	grep -qF "\"id\":\"$ID_A\"" <<<"$r" || { echo "$r"; return 1; }
}

c_heartbeat() {
	# Three TTLs later the key must still be there: heartbeats refresh it.
	sleep 9
	machine_exists "$ID_A" || { echo "machine object expired"; tail -20 "$T/a.log"; return 1; }
	alive a
}

c_usr1_dump() {
	kill -USR1 "$(pid_of a)"
	wait_logged a "State dump: {" || return 1
	grep -F "State dump:" "$T/a.log" | tail -1 | sed 's/.*State dump: //' | jq -e ".MachineID == \"$ID_A\" and .Registered == true" >/dev/null
}

c_reload() {
	local i code bad=0 v
	# Changed metadata must be published by the reloaded server.
	sed -i 's/^metadata=.*/metadata=role=db/' "$T/a.conf"
	kill -HUP "$(pid_of a)"
	wait_logged a "Reloading configuration from $T/a.conf" || return 1
	# The listeners stay open through the reload: every request is answered, none with 503.
	for i in $(seq 20); do
		code=$(api_code a /fleet/v1/machines)
		[ "$code" = 200 ] || { echo "request $i during reload: $code"; bad=1; }
		sleep 0.1
	done
	[ $bad = 0 ] || return 1
	wait_logged a "Restarting server components" || return 1
	wait_until 10 eval 'machine_value "$ID_A" | grep -q "\"Metadata\":{\"role\":\"db\"}"' ||
		{ echo "metadata not republished: $(machine_value "$ID_A")"; return 1; }
	alive a && ! logged a "Failed serving HTTP on listener"
}

c_duplicate() {
	local r
	write_conf b
	start_fleet b "$ID_A"
	wait_logged b "Server register machine failed: " 15 || return 1
	wait_logged b "Another machine is registered with our machine ID $ID_A" || return 1
	r=$(api b /fleet/v1/machines)
	expect_eq "duplicate API status" "${r%% *}" 503 || return 1
	grep -qF "fleet server unable to communicate with etcd" <<<"$r" || { echo "$r"; return 1; }
	alive b || return 1
	# Its shutdown must leave the rightful owner's key alone.
	stop_fleet b || { echo "duplicate exited with $?"; return 1; }
	machine_exists "$ID_A" || { echo "duplicate removed the owner's machine object"; return 1; }
}

c_sigterm() {
	local rc
	stop_fleet a
	rc=$?
	expect_eq "exit status" "$rc" 0 || { tail -20 "$T/a.log"; return 1; }
	logged a "Gracefully shutting down" || return 1
	machine_exists "$ID_A" && { echo "machine object still present"; return 1; }
	return 0
}

c_disable_engine() {
	local id v
	new_prefix
	id=$(new_id)
	write_conf c "disable_engine=true"
	start_fleet c "$id"
	wait_until 15 machine_exists "$id" || { tail -20 "$T/c.log"; return 1; }
	v=$(machine_value "$id")
	grep -qF '"Capabilities":{"DISABLE_ENGINE":true,"GRPC":false}' <<<"$v" || { echo "$v"; return 1; }
	wait_logged c "Not starting engine; disable-engine is set" || return 1
	stop_fleet c; expect_eq "exit status" "$?" 0
}

c_agent_role() {
	local id v
	new_prefix
	id=$(new_id)
	write_conf ag
	start_fleet ag "$id" agent
	wait_until 15 machine_exists "$id" || { tail -20 "$T/ag.log"; return 1; }
	v=$(machine_value "$id")
	grep -qF '"DISABLE_ENGINE":true' <<<"$v" || { echo "$v"; return 1; }
	wait_api ag /fleet/v1/machines || return 1
	stop_fleet ag; expect_eq "exit status" "$?" 0 || return 1
	! machine_exists "$id"
}

c_scheduler_role() {
	local id
	new_prefix
	id=$(new_id)
	write_conf sch
	start_fleet sch "$id" scheduler
	wait_api sch /fleet/v1/units || return 1
	# No presence of its own.
	machine_exists "$id" && { echo "scheduler registered a machine"; return 1; }
	stop_fleet sch; expect_eq "exit status" "$?" 0
}

c_socket_activation() {
	local id pid
	command -v systemd-socket-activate >/dev/null || { echo "no systemd-socket-activate"; return 1; }
	new_prefix
	id=$(new_id)
	write_conf sa
	sed -i '/^api_listen=/d' "$T/sa.conf"
	echo "$id" >"$T/sa.machine-id"
	# systemd-socket-activate passes on only the environment it is told to.
	local pass=(-E "FLEET_MACHINE_ID_FILE=$T/sa.machine-id" -E "XDG_RUNTIME_DIR=$XDG_RUNTIME_DIR")
	[ -n "${DBUS_SESSION_BUS_ADDRESS:-}" ] && pass+=(-E "DBUS_SESSION_BUS_ADDRESS=$DBUS_SESSION_BUS_ADDRESS")
	systemd-socket-activate -l "$T/sa.sock" "${pass[@]}" \
		"$FLEET_BIN" daemon -config "$T/sa.conf" >"$T/sa.log" 2>&1 </dev/null &
	pid=$!
	PIDS+=("$pid")
	PID_sa=$pid
	wait_until 5 test -S "$T/sa.sock" || return 1
	# The first connection makes systemd-socket-activate exec fleetd with LISTEN_FDS=1.
	wait_api sa /fleet/v1/machines 20 || return 1
	logged sa "socket-activated" || { tail -5 "$T/sa.log"; return 1; }
	machine_exists "$id" || return 1
	stop_fleet sa; expect_eq "exit status" "$?" 0
}

# Heartbeats against a private etcd that we freeze (SIGSTOP): the monitor must fire, stop the
# components, re-register once etcd is back; a SIGTERM while etcd is frozen still exits 0.
c_monitor() {
	local eps pids id rc
	new_prefix
	OWN_ETCD=daemon-mon
	mkdir -p "$T/etcd"
	eps=$(FLEET_TEST_STATE=$T/etcd "$TL_TOP/test/lib/etcd.sh" start "$OWN_ETCD" 1) || { echo "private etcd failed"; return 1; }
	pids=$(cat "$T/etcd/$OWN_ETCD.pids")
	id=$(new_id)
	CONF_ETCD=$eps CONF_TTL=2s write_conf m
	start_fleet m "$id"
	wait_until 15 machine_exists "$id" "$eps" || { tail -20 "$T/m.log"; return 1; }
	wait_api m /fleet/v1/machines || return 1
	kill -STOP $pids
	wait_logged m "Server monitor triggered: Monitor timed out before successful heartbeat" 30 ||
		{ kill -CONT $pids; return 1; }
	kill -CONT $pids
	wait_logged m "Restarting server" || return 1
	wait_until 20 eval '[ "$(grep -c "Registered machine" "$T/m.log")" -ge 2 ]' || { tail -20 "$T/m.log"; return 1; }
	wait_api m /fleet/v1/machines || return 1
	machine_exists "$id" "$eps" || return 1
	# Shutdown with the store unreachable: bounded, clean exit.
	kill -STOP $pids
	stop_fleet m
	rc=$?
	kill -CONT $pids
	expect_eq "exit status with etcd frozen" "$rc" 0 || { tail -20 "$T/m.log"; return 1; }
}

# In ASan/UBSan builds (./build.sh test --asan) every daemon's log must be free of reports.
c_sanitizers() {
	local f bad=0
	for f in "$T"/*.log; do
		[ -f "$f" ] || continue
		if grep -qE "(Address|Leak|UndefinedBehavior)Sanitizer|runtime error:" "$f"; then
			echo "sanitizer report in $(basename "$f"):"
			grep -E -A15 "(Address|Leak|UndefinedBehavior)Sanitizer|runtime error:" "$f" | head -40
			bad=1
		fi
	done
	return $bad
}

t_run daemon.version_help c_version_help
t_run daemon.bad_config c_bad_config
if [ -z "$ETCD" ]; then
	for c in register api heartbeat usr1_dump reload duplicate sigterm disable_engine agent_role \
		scheduler_role socket_activation monitor; do
		t_skip "daemon.$c" "no etcd (FLEET_TEST_ETCD unset)"
	done
	exit 0
fi
if ! sd_start; then
	for c in register api heartbeat usr1_dump reload duplicate sigterm disable_engine agent_role \
		socket_activation monitor; do
		t_skip "daemon.$c" "no systemd --user manager: $SD_WHY"
	done
	t_run daemon.scheduler_role c_scheduler_role
	t_run daemon.sanitizers c_sanitizers
	exit 0
fi
SD_STARTED=1
t_run daemon.register c_register
t_run daemon.api c_api
t_run daemon.heartbeat c_heartbeat
t_run daemon.usr1_dump c_usr1_dump
t_run daemon.reload c_reload
t_run daemon.duplicate c_duplicate
t_run daemon.sigterm c_sigterm
t_run daemon.disable_engine c_disable_engine
t_run daemon.agent_role c_agent_role
t_run daemon.scheduler_role c_scheduler_role
t_run daemon.socket_activation c_socket_activation
t_run daemon.monitor c_monitor
t_run daemon.sanitizers c_sanitizers
exit 0
