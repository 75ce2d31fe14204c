#!/usr/bin/env bash
# cluster-faults.sh: fault scenarios on real nspawn clusters. Every scenario checks the
# invariants: no unit lost; a non-Global unit never active on two machines at once (sampled
# from systemd inside every node) except while its machine is cut off, and then not for longer
# than the bound after it heals; Conflicts never violated; everything converges afterwards.
. "$(dirname "$0")/../lib/testlib.sh"
. "$TL_TOP/test/cluster/cluster.sh"
. "$TL_TOP/test/cluster/suite-lib.sh"
FX=$TL_TOP/test/fixtures/units
TTL=3          # CL_TTL (agent_ttl) in seconds
BOUND=15       # reconcile + restart slack on top of the TTL
cd "$FX" || exit 1

# fleetd SIGKILLed on the machine running a unit: the unit moves within agent_ttl + bound and
# systemd (Restart=always) brings fleetd back, which stops the stale copy.
test_KillFleetd() {
	local m n
	new_cluster 3 || return 1
	ctl start --no-block conflict.{0..2}.service hello.service >/dev/null && wait_active 4 || return 1
	m=$(machine_of hello.service); n=$(node_of_machine "$m")
	[ "$n" = "$CUR" ] && CUR=$(other_node "$n")
	cl_exec "$n" systemctl kill -s KILL fleet.service || return 1
	wait_until $((TTL + BOUND)) eval '[ -n "$(machine_of hello.service)" ] && [ "$(machine_of hello.service)" != "$m" ]' ||
		{ echo "hello.service did not move"; active_units; return 1; }
	wait_each_once $((BOUND + 15)) hello.service conflict.{0..2}.service || return 1
	no_conflict_violation && wait_active 4
}

# A node powered off: its units move; Conflicts hold.
test_PowerOff() {
	local m n
	new_cluster 3 || return 1
	ctl start --no-block conflict.{0..1}.service hello.service goodbye.service >/dev/null && wait_active 4 || return 1
	m=$(machine_of conflict.0.service); n=$(node_of_machine "$m")
	[ "$n" = "$CUR" ] && CUR=$(other_node "$n")
	cl_kill "$n"
	wait_machines 2 || return 1
	wait_until $((TTL + BOUND)) eval '[ -n "$(machine_of conflict.0.service)" ]' || { active_units; return 1; }
	wait_active 4 && no_double_run conflict.{0..1}.service hello.service goodbye.service && no_conflict_violation
}

# A node cut from etcd for longer than agent_ttl: its units move; it keeps running its copies
# while cut off (it cannot know better), and stops them within the bound once it is back.
test_NetworkPartition() {
	local m n
	new_cluster 3 || return 1
	ctl start --no-block hello.service goodbye.service >/dev/null && wait_active 2 || return 1
	m=$(machine_of hello.service); n=$(node_of_machine "$m")
	[ "$n" = "$CUR" ] && CUR=$(other_node "$n")
	cl_cut_etcd "$n"
	wait_until $((TTL + BOUND)) eval '[ -n "$(machine_of hello.service)" ] && [ "$(machine_of hello.service)" != "$m" ]' ||
		{ cl_heal_etcd "$n"; echo "hello.service did not move"; active_units; return 1; }
	cl_exec "$n" systemctl is-active -q hello.service || { cl_heal_etcd "$n"; echo "cut-off node stopped its copy"; return 1; }
	cl_heal_etcd "$n"
	wait_each_once "$BOUND" hello.service goodbye.service && wait_machines 3 && wait_active 2
}

# etcd unreachable for every node for 60 s: no running unit is stopped or restarted anywhere.
test_EtcdOutage() {
	local n u before=() after=() i=0
	new_cluster 2 || return 1
	ctl start --no-block hello.service goodbye.service global.service >/dev/null && wait_active 4 || return 1
	for n in "${NODES[@]}"; do for u in hello goodbye global; do before+=("$n/$u=$(invocation "$n" $u.service)"); done; done
	for n in "${NODES[@]}"; do cl_cut_etcd "$n"; done
	sleep 60
	for n in "${NODES[@]}"; do cl_heal_etcd "$n"; done
	wait_machines 2 && wait_active 4 || return 1
	for n in "${NODES[@]}"; do for u in hello goodbye global; do after+=("$n/$u=$(invocation "$n" $u.service)"); done; done
	expect_eq "invocation IDs" "${after[*]}" "${before[*]}"
}

# A 3-member etcd cluster loses its leader mid-scenario: fleet carries on.
test_EtcdLeaderLoss() {
	local l
	new_cluster 2 || return 1
	ctl start --no-block hello.service >/dev/null && wait_active 1 || return 1
	l=$(FLEET_TEST_STATE=$CL_STATE "$CL_TOP/test/lib/etcd.sh" leader cl) || { echo "no leader"; return 1; }
	FLEET_TEST_STATE=$CL_STATE "$CL_TOP/test/lib/etcd.sh" kill-member cl "$l"
	ctl start --no-block goodbye.service conflict.0.service >/dev/null || return 1
	wait_active 3 && sleep $((TTL * 2)) && wait_machines 2 && wait_active 3 && no_double_run hello.service goodbye.service
}

# fleetd restarted on a node (SIGKILL, then systemd restarts it): its units keep running.
test_FleetdRestartKeepsUnits() {
	local before after
	new_cluster 1 || return 1
	ctl start --no-block hello.service >/dev/null && wait_active 1 || return 1
	before=$(invocation 1 hello.service)
	cl_exec 1 systemctl kill -s KILL fleet.service || return 1
	sleep 1
	cl_exec 1 systemctl restart fleet.service || return 1
	wait_machines 1 && wait_active 1 || return 1
	sleep 5
	after=$(invocation 1 hello.service)
	expect_eq "invocation ID" "$after" "$before"
}

TESTS=$(declare -F | awk '{print $3}' | grep '^test_')
why=$(cl_why_not)
if [ -n "$why" ]; then
	for t in $TESTS; do t_skip "faults.${t#test_}" "$why"; done
	exit 0
fi
# Three etcd members: the leader-loss scenario needs them; the others do not mind.
CL_ETCD_MEMBERS=3 cl_init >&2 || { for t in $TESTS; do t_fail "faults.${t#test_}" "cluster setup failed"; done; exit 1; }
for t in $TESTS; do
	[ -n "${FLEET_CL_ONLY:-}" ] && [[ $t != *$FLEET_CL_ONLY* ]] && continue
	t_run "faults.${t#test_}" "$t"
done
for n in "${NODES[@]}"; do cl_destroy "$n"; done
exit 0
