#!/usr/bin/env bash
# suite-lib.sh: helpers shared by the cluster suites (test/suites/cluster*.sh): fresh clusters
# per test, fleetctl against a node, bounded waits on what fleet and systemd report, and the
# invariant checks of the fault scenarios. Sourced after testlib.sh and cluster.sh.

CUR=1          # node whose API fleetctl talks to
NODES=()
ctl() { cl_ctl "$CUR" "$@"; }

# new_cluster N [ETCD_MEMBERS]: N fresh nodes (new disks, machine IDs) on a fresh key prefix.
new_cluster() {
	local n
	for n in "${NODES[@]}"; do cl_destroy "$n"; done
	NODES=()
	# A counter, not $RANDOM alone: two clusters of one run may draw the same number (1 in
	# 32,768 per pair), and the later one then finds the units the earlier test left (the
	# likely cause of a CI run where a fresh 1-node cluster showed 11 units of an earlier test).
	CL_CLUSTERS=$((${CL_CLUSTERS:-0} + 1))
	CL_PREFIX=/fleet_functional/$$-$CL_CLUSTERS-$RANDOM/
	for n in $(seq 1 "$1"); do cl_boot "$n" || return 1; NODES+=("$n"); done
	CUR=1
	wait_machines "$1"
}

# count_is N FUNC [ARGS...]: FUNC's output equals N.
count_is() { local want=$1; shift; [ "$("$@")" = "$want" ]; }
n_machines() { ctl list-machines --no-legend --full --fields machine 2>/dev/null | grep -c .; }
wait_machines() { wait_until 20 count_is "$1" n_machines || { echo "want $1 machines, have $(n_machines)"; return 1; }; }
# active units as "unit machine" lines
active_units() { ctl list-units --no-legend --full --fields unit,active,machine 2>/dev/null | awk '$2=="active"{sub("/.*", "", $3); print $1, $3}' | sort; }
n_active() { active_units | grep -c .; }
wait_active() { wait_until "${2:-30}" count_is "$1" n_active || { echo "want $1 active, have:"; active_units; return 1; }; }
n_unit_files() { ctl list-unit-files --no-legend --full --fields unit 2>/dev/null | grep -c .; }
wait_unit_files() { wait_until 20 count_is "$1" n_unit_files || { echo "want $1 unit files, have $(n_unit_files)"; return 1; }; }
n_units() { ctl list-units --no-legend --full --fields unit 2>/dev/null | grep -c .; }
wait_units() { wait_until 20 count_is "$1" n_units || { echo "want $1 units, have $(n_units)"; return 1; }; }
machine_of() { active_units | awk -v u="$1" '$1==u{print $2}'; }
node_of_machine() { local n; for n in "${NODES[@]}"; do [ "$(cl_machine_id "$n")" = "$1" ] && echo "$n"; done; }
other_node() { local n; for n in "${NODES[@]}"; do [ "$n" != "$1" ] && { echo "$n"; return; }; done; }

# systemd's own view, sampled inside every node: how many machines run unit U.
n_running() {
	local n c=0
	for n in "${NODES[@]}"; do
		[ -n "$(cl_init_pid "$n")" ] || continue
		cl_exec "$n" systemctl is-active -q "$1" 2>/dev/null && c=$((c + 1))
	done
	echo $c
}
# No non-global unit may run on two machines at once (the invariant of the fault tests).
no_double_run() {
	local u c
	for u in "$@"; do
		c=$(n_running "$u")
		[ "$c" -le 1 ] || { echo "$u active on $c machines"; return 1; }
	done
}
# Each of the units runs on exactly one machine, within SECONDS.
wait_each_once() {
	local t=$1 u; shift
	for u in "$@"; do
		wait_until "$t" count_is 1 n_running "$u" || { echo "$u runs on $(n_running "$u") machines"; return 1; }
	done
}
# Conflicts=conflict.*: at most one per machine, sampled from systemd.
no_conflict_violation() {
	local n c
	for n in "${NODES[@]}"; do
		[ -n "$(cl_init_pid "$n")" ] || continue
		c=$(cl_exec "$n" systemctl list-units --no-legend --state=active 'conflict.*' 2>/dev/null | grep -c 'conflict\.')
		[ "$c" -le 1 ] || { echo "node $n runs $c conflicting units"; return 1; }
	done
}
# The systemd invocation ID of U on node N: unchanged means never restarted.
invocation() { cl_exec "$1" systemctl show --value -p InvocationID "$2" 2>/dev/null; }
fleet_log() { cl_exec "$1" journalctl -u fleet --no-pager 2>/dev/null; }
