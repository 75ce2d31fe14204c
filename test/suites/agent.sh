#!/usr/bin/env bash
# agent.sh: the agent end to end: units written straight into a real etcd ($FLEET_TEST_ETCD, a
# key prefix per run) drive `fleet agent` (presence + agent, no engine: targets are set here),
# which drives a real `systemd --user` manager (test/lib/systemd.sh). Covers load/start/stop/
# unload, the registry side (job-state heartbeat, unit states), global units and metadata,
# hash changes, refused names, adoption after a crash, an etcd outage that must not stop
# anything, and the shutdown purge. Every process started here is killed by PID on exit.
. "$(dirname "$0")/../lib/testlib.sh"

T=$(mktemp -d /tmp/fleet-agent.XXXXXX)
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
	# FLEET_TEST_KEEP_LOG=FILE keeps the daemon's log for a look afterwards.
	[ -n "${FLEET_TEST_KEEP_LOG:-}" ] && cp "$T/agent.log" "$FLEET_TEST_KEEP_LOG" 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 143' TERM INT

CASES="load_start registry_state stop global hash_change refused_names unload stop_refused adopt etcd_outage purge"
skip_all() { local c; for c in $CASES; do t_skip "agent.$c" "$1"; done; exit 0; }

[ -x "$FLEET_BIN" ] || skip_all "no fleet binary at $FLEET_BIN"
ETCD=${FLEET_TEST_ETCD:-}
[ -n "$ETCD" ] || skip_all "no etcd (FLEET_TEST_ETCD unset)"
command -v jq >/dev/null || skip_all "no jq"
. "$TL_TOP/test/lib/systemd.sh"
FLEET_TEST_STATE=$T sd_start "ag$$" || skip_all "no systemd --user manager: $SD_WHY"
SD_STARTED=1

EP=${ETCD%%,*}
PREFIX=/fleet-test-agent/$$/
ID=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
UNITS=$T/units
LOG=$T/agent.log
TTL=4

# ---- etcd ----
ek() { echo "${PREFIX}$1"; }
eput() { curl -fs --max-time 5 -XPUT "${3:-$EP}/v2/keys$(ek "$1")" --data-urlencode "value=$2" >/dev/null; }
edel() { curl -fs --max-time 5 -XDELETE "${2:-$EP}/v2/keys$(ek "$1")" >/dev/null; }
eget() { curl -fs --max-time 5 "${2:-$EP}/v2/keys$(ek "$1")" | jq -r .node.value; }
ettl() { curl -fs --max-time 5 "$EP/v2/keys$(ek "$1")" | jq -r .node.ttl; }
eexists() { curl -fs --max-time 5 "${2:-$EP}/v2/keys$(ek "$1")" >/dev/null; }

# submit NAME CANONICAL_TEXT TARGET_STATE [TARGET] [ENDPOINT]: a unit as fleetctl would create it;
# the text must already be in canonical form (§7.2) so its SHA-1 is the unit's hash; $(...)
# strips the final newline, which is put back here.
submit() {
	local name=$1 text=$2$'\n' ts=$3 target=${4:-} ep=${5:-$EP} hash arr
	hash=$(printf '%s' "$text" | sha1sum | cut -c1-40)
	arr=$(for i in $(seq 0 2 38); do printf '%d,' "0x${hash:$i:2}"; done)
	eput "unit/$hash" "$(jq -cn --arg r "$text" '{Raw:$r}')" "$ep" || return 1
	eput "job/$name/object" "{\"Name\":\"$name\",\"UnitHash\":[${arr%,}]}" "$ep" || return 1
	eput "job/$name/target-state" "$ts" "$ep" || return 1
	if [ -n "$target" ]; then eput "job/$name/target" "$target" "$ep" || return 1; fi
	echo "$hash"
}
svc() { printf '[Service]\nExecStart=/bin/sleep %s\n' "$1"; }

# ---- systemd ----
sctl() { systemctl --user "$@"; }
active() { [ "$(sctl is-active "$1" 2>/dev/null)" = active ]; }
inactive() { ! active "$1"; }
invocation() { sctl show -p InvocationID --value "$1" 2>/dev/null; }
load_state() { sctl show -p LoadState --value "$1" 2>/dev/null; }

# ---- the agent ----
AGENT_PID=
start_agent() {
	local ep=${1:-$ETCD}
	mkdir -p "$UNITS"
	{
		echo "etcd_servers=$ep"
		echo "etcd_key_prefix=$PREFIX"
		echo "agent_ttl=${TTL}s"
		echo "public_ip=10.1.2.3"
		echo "metadata=role=web,az=1"
		echo "api_listen=unix:$T/agent.sock"
		echo "units_directory=$UNITS/"
		echo "systemd_user=true"
		echo "verbosity=1"
	} >"$T/agent.conf"
	echo "$ID" >"$T/machine-id"
	rm -f "$T/agent.sock"
	echo "=== start $(date +%T)" >>"$LOG"
	FLEET_MACHINE_ID_FILE=$T/machine-id "$FLEET_BIN" agent -config "$T/agent.conf" >>"$LOG" 2>&1 </dev/null &
	AGENT_PID=$!
	PIDS+=("$AGENT_PID")
}
stop_agent() { # [SIGNAL] -> exit status
	local p=$AGENT_PID
	kill -"${1:-TERM}" "$p" 2>/dev/null
	for _ in $(seq 600); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
	kill -0 "$p" 2>/dev/null && { kill -9 "$p"; wait "$p" 2>/dev/null; return 124; }
	wait "$p"
}
logged() { grep -qF -- "$1" "$LOG"; }
since_mark() { sed -n "/^=== mark $1\$/,\$p" "$LOG"; }
mark() { echo "=== mark $1" >>"$LOG"; }
show_log() { echo "--- agent log (last 30 lines)"; tail -n 30 "$LOG"; }
wait_for() { # SECONDS DESCRIPTION CMD...
	local t=$1 what=$2; shift 2
	wait_until "$t" "$@" || { echo "timed out waiting for: $what"; show_log; return 1; }
}

# ---- cases ----
H_HELLO=
c_load_start() {
	start_agent
	wait_for 20 "machine registered" eexists "machines/$ID/object" || return 1
	H_HELLO=$(submit hello.service "$(svc 1001)" launched "$ID") || return 1
	wait_for 15 "hello.service active" active hello.service || return 1
	[ -f "$UNITS/hello.service" ] || { echo "no unit file"; return 1; }
	expect_eq "unit file" "$(cat "$UNITS/hello.service")" "$(svc 1001)" || return 1
	expect_eq "mode" "$(stat -c %a "$UNITS/hello.service")" 644 || return 1
	logged "Writing systemd unit hello.service ($(svc 1001 | wc -c)b)" || { show_log; return 1; }
	logged 'AgentReconciler completed task: type=LoadUnit job=hello.service reason="unit scheduled here but not loaded"' || { show_log; return 1; }
	logged 'AgentReconciler completed task: type=StartUnit job=hello.service reason="unit currently loaded but desired state is launched"' || return 1
	# Linked at runtime into the manager's runtime directory.
	expect_eq "is-enabled" "$(sctl is-enabled hello.service)" linked-runtime
}

c_registry_state() {
	local st ttl
	wait_for 10 "job-state heartbeat" eval '[ "$(eget job/hello.service/job-state)" = "$ID" ]' || return 1
	ttl=$(ettl job/hello.service/job-state)
	[ "$ttl" -ge 1 ] && [ "$ttl" -le $TTL ] || { echo "job-state ttl $ttl"; return 1; }
	wait_for 10 "unit state published" eexists "states/hello.service/$ID" || return 1
	wait_for 10 "state active" eval 'eget "states/hello.service/$ID" | jq -e ".activeState == \"active\"" >/dev/null' || return 1
	st=$(eget "states/hello.service/$ID")
	expect_eq "state" "$(jq -c '[.loadState,.activeState,.subState,.unitHash,.machineState.ID]' <<<"$st")" \
		"[\"loaded\",\"active\",\"running\",\"$H_HELLO\",\"$ID\"]" || return 1
	# fleet's legacy state/<unit> (spec §4.1: never read) is not written any more.
	eexists state/hello.service && { echo "legacy state/hello.service written"; return 1; }
	# Heartbeats and states are refreshed: still there after two TTLs.
	sleep $((2 * TTL))
	eexists job/hello.service/job-state && eexists "states/hello.service/$ID" || { echo "expired"; show_log; return 1; }
	# The API of this machine reports it too (the state comes from the registry).
	kill -0 "$AGENT_PID"
}

c_stop() {
	eput job/hello.service/target-state loaded || return 1
	wait_for 10 "hello.service inactive" inactive hello.service || return 1
	wait_for 10 "job-state removed" eval '! eexists job/hello.service/job-state' || return 1
	wait_for 10 "state inactive" eval 'eget "states/hello.service/$ID" | jq -e ".activeState == \"inactive\"" >/dev/null' || return 1
	logged 'type=StopUnit job=hello.service reason="unit currently launched but desired state is loaded"' || return 1
	[ -f "$UNITS/hello.service" ] || { echo "stop removed the file"; return 1; }
	eput job/hello.service/target-state launched && wait_for 10 "hello.service active again" active hello.service
}

c_global() {
	submit global-any.service "$(printf '[Service]\nExecStart=/bin/sleep 1002\n\n[X-Fleet]\nGlobal=true\n')" launched >/dev/null &&
		submit global-web.service "$(printf '[Service]\nExecStart=/bin/sleep 1003\n\n[X-Fleet]\nGlobal=true\nMachineMetadata=role=web\n')" launched >/dev/null &&
		submit global-db.service "$(printf '[Service]\nExecStart=/bin/sleep 1004\n\n[X-Fleet]\nGlobal=true\nMachineMetadata=role=db\n')" launched >/dev/null &&
		submit other.service "$(svc 1005)" launched someone-else >/dev/null || return 1
	wait_for 15 "global units active" eval 'active global-any.service && active global-web.service' || return 1
	sleep 1
	inactive global-db.service && [ ! -e "$UNITS/global-db.service" ] || { echo "global-db runs"; return 1; }
	[ ! -e "$UNITS/other.service" ] || { echo "other machine's unit loaded here"; return 1; }
	# Dynamic metadata counts: role=db set through the registry brings global-db here.
	eput "machines/$ID/metadata/role" db || return 1
	wait_for 15 "global-db active" active global-db.service || return 1
	wait_for 15 "global-web gone" eval '[ ! -e "$UNITS/global-web.service" ]' || return 1
	inactive global-web.service || return 1
	edel "machines/$ID/metadata/role"
	wait_for 15 "global-web back" active global-web.service
}

c_hash_change() {
	local inv1 inv2 h2
	inv1=$(invocation hello.service)
	[ -n "$inv1" ] || return 1
	mark hash
	h2=$(submit hello.service "$(svc 1006)" launched "$ID") || return 1
	wait_for 15 "new contents on disk" eval '[ "$(cat "$UNITS/hello.service")" = "$(svc 1006)" ]' || return 1
	wait_for 15 "hello.service active" eval 'active hello.service && [ "$(invocation hello.service)" != "$inv1" ]' || return 1
	since_mark hash | grep -qF 'type=UnloadUnit job=hello.service reason="unit loaded but hash differs to expected"' || { show_log; return 1; }
	wait_for 10 "state has the new hash" eval 'eget "states/hello.service/$ID" | jq -e ".unitHash == \"$h2\" and .activeState == \"active\"" >/dev/null' || return 1
	H_HELLO=$h2
	inv2=$(invocation hello.service)
	sleep 6 # one more periodic pass: nothing restarts
	expect_eq "invocation" "$(invocation hello.service)" "$inv2"
}

c_refused_names() {
	# Valid for fleet, but ".." never becomes a file name here.
	submit a..b.service "$(svc 1007)" launched "$ID" >/dev/null || return 1
	wait_for 10 "refusal logged" logged "Not running unit a..b.service here: invalid unit name" || return 1
	[ -z "$(ls -A "$UNITS" | grep -v -e '^hello.service$' -e '^global-')" ] || { ls -la "$UNITS"; return 1; }
	edel job/a..b.service/object
	return 0
}

c_unload() {
	submit bye.service "$(svc 1009)" launched "$ID" >/dev/null || return 1
	wait_for 15 "bye.service active" active bye.service || return 1
	wait_for 10 "bye state" eexists "states/bye.service/$ID" || return 1
	# Unscheduled (the engine's unload): stopped, disabled, file deleted, states removed.
	edel job/bye.service/target || return 1
	eput job/bye.service/target-state inactive || return 1
	wait_for 15 "bye.service file gone" eval '[ ! -e "$UNITS/bye.service" ]' || return 1
	inactive bye.service || return 1
	wait_for 10 "systemd forgot bye.service" eval '[ "$(load_state bye.service)" = not-found ]' || return 1
	wait_for 10 "bye state removed" eval '! eexists "states/bye.service/$ID"' || return 1
	eexists states/bye.service && { echo "states/bye.service left behind"; return 1; }
	eexists state/bye.service && { echo "legacy state/bye.service written"; return 1; }
	! eexists job/bye.service/job-state
}

# A unit whose stop fails keeps its file and keeps running (fleet issue 1216); once it is down
# the unload goes through.
c_stop_refused() {
	submit stubborn.service "$(printf '[Unit]\nRefuseManualStop=yes\n\n[Service]\nExecStart=/bin/sleep 1011\n')" launched "$ID" >/dev/null || return 1
	wait_for 15 "stubborn.service active" active stubborn.service || return 1
	edel job/stubborn.service/target && eput job/stubborn.service/target-state inactive || return 1
	wait_for 15 "unload failure" logged "AgentReconciler task failed: type=UnloadUnit job=stubborn.service" || return 1
	[ -f "$UNITS/stubborn.service" ] && active stubborn.service || { echo "file removed or unit stopped"; return 1; }
	# It does not block the other units (fleet ended the whole pass at the first failure).
	submit after.service "$(svc 1012)" launched "$ID" >/dev/null || return 1
	wait_for 15 "after.service active" active after.service || return 1
	active stubborn.service || return 1
	sctl kill stubborn.service || return 1
	wait_for 20 "stubborn.service unloaded" eval '[ ! -e "$UNITS/stubborn.service" ]'
}

# A crashed agent (SIGKILL) comes back: what runs with the right contents is adopted, not restarted.
c_adopt() {
	local inv
	inv=$(invocation hello.service)
	stop_agent KILL
	active hello.service || { echo "SIGKILL stopped the unit"; return 1; }
	mark adopt
	start_agent
	# The old machine key must expire before the new process can register (TTL $TTL s).
	wait_for 30 "adoption" eval 'since_mark adopt | grep -qF "type=AdoptUnit job=hello.service"' || return 1
	sleep 6
	expect_eq "hello.service invocation" "$(invocation hello.service)" "$inv" || return 1
	active global-any.service || return 1
	! since_mark adopt | grep -q 'type=StartUnit job=hello.service' || { echo "restarted"; show_log; return 1; }
}

# etcd goes away (frozen): nothing stops, whatever the agent's view; when it is back nothing
# restarts and changes apply again.
c_etcd_outage() {
	local eps pids inv
	stop_agent || { echo "exit status $?"; return 1; }
	OWN_ETCD=agent-outage
	mkdir -p "$T/etcd"
	eps=$(FLEET_TEST_STATE=$T/etcd "$TL_TOP/test/lib/etcd.sh" start "$OWN_ETCD" 1) || { echo "private etcd failed"; return 1; }
	pids=$(cat "$T/etcd/$OWN_ETCD.pids")
	submit out.service "$(svc 1010)" launched "$ID" "$eps" >/dev/null || return 1
	mark outage
	start_agent "$eps"
	wait_for 20 "out.service active" active out.service || return 1
	inv=$(invocation out.service)
	kill -STOP $pids
	# Long enough for heartbeats to fail, the monitor to fire and the agent to be rebuilt.
	for _ in $(seq 20); do
		active out.service || { kill -CONT $pids; echo "out.service stopped during the outage"; show_log; return 1; }
		sleep 0.5
	done
	kill -CONT $pids
	wait_for 30 "registered again" eval '[ "$(since_mark outage | grep -c "Registered machine")" -ge 2 ] || since_mark outage | grep -q "Heartbeat succeeded"' || true
	sleep 3
	active out.service && expect_eq "out.service invocation" "$(invocation out.service)" "$inv" || { show_log; return 1; }
	# The registry is authoritative again: a change applies.
	eput job/out.service/target-state loaded "$eps" || return 1
	wait_for 20 "out.service stopped after the outage" inactive out.service
}

c_purge() {
	local rc
	stop_agent
	rc=$?
	expect_eq "exit status" "$rc" 0 || { show_log; return 1; }
	[ -z "$(ls -A "$UNITS")" ] || { echo "files left:"; ls -la "$UNITS"; return 1; }
	inactive out.service || return 1
	for u in hello.service global-any.service global-web.service; do inactive "$u" || { echo "$u still active"; return 1; }; done
	[ "$(load_state out.service)" = not-found ] || { echo "out.service still known to systemd"; return 1; }
	eexists "states/out.service/$ID" "$EPS_OUT" && { echo "state left behind"; return 1; }
	return 0
}

t_run agent.load_start c_load_start
t_run agent.registry_state c_registry_state
t_run agent.stop c_stop
t_run agent.global c_global
t_run agent.hash_change c_hash_change
t_run agent.refused_names c_refused_names
t_run agent.unload c_unload
t_run agent.stop_refused c_stop_refused
t_run agent.adopt c_adopt
t_run agent.etcd_outage c_etcd_outage
EPS_OUT=$(. "$T/etcd/$OWN_ETCD.env" 2>/dev/null && echo "${ENDPOINTS%%,*}")
t_run agent.purge c_purge
exit 0
