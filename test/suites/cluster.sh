#!/usr/bin/env bash
# cluster.sh: fleet v1.0.0's functional suite (spec §8), ported, on real multi-host clusters:
# systemd-nspawn nodes with systemd as PID 1, each with its own network namespace, sshd and
# machine ID, sharing one real etcd (test/cluster/cluster.sh). Every test gets fresh nodes and
# a fresh key prefix. Skipped, with the reason, where nodes cannot be created.
# FLEET_CL_ONLY=PATTERN runs only the tests whose name contains PATTERN.
. "$(dirname "$0")/../lib/testlib.sh"
. "$TL_TOP/test/cluster/cluster.sh"
. "$TL_TOP/test/cluster/suite-lib.sh"
FX=$TL_TOP/test/fixtures/units

cd "$FX" || exit 1

# ---- unit_action_test.go
test_UnitRunnable() {
	new_cluster 1 && ctl start hello.service && wait_active 1 && [ "$(active_units | awk '{print $1}')" = hello.service ]
}
test_UnitSubmit() {
	local i r
	new_cluster 1 || return 1
	for r in 1 2; do
		ctl submit hello@{1..9}.service >/dev/null && wait_unit_files 9 || return 1
		for i in $(seq 9); do ctl destroy hello@$i.service >/dev/null || return 1; done
		wait_unit_files 0 || return 1
	done
}
test_UnitLoad() {
	local i r
	new_cluster 1 || return 1
	for r in 1 2; do
		ctl load hello@{1..6}.service >/dev/null && wait_units 6 || return 1
		for i in $(seq 6); do ctl unload hello@$i.service >/dev/null || return 1; done
		wait_units 0 || return 1
	done
}
test_UnitStart() {
	local i r
	new_cluster 1 || return 1
	for r in 1 2; do
		ctl start hello@{1..3}.service >/dev/null && wait_active 3 || return 1
		for i in $(seq 3); do ctl stop hello@$i.service >/dev/null || return 1; done
		wait_active 0 || return 1
	done
}
replace_flow() { # verb count
	local verb=$1 n=$2 i d before after
	new_cluster 1 || return 1
	d=$(mktemp -d)
	ctl "$verb" $(for i in $(seq "$n"); do echo "hello@$i.service"; done) >/dev/null || return 1
	for i in $(seq "$n"); do
		sed 's/sleep 1/sleep 2/' hello@.service >"$d/hello@$i.service"
		before=$(ctl cat hello@$i.service)
		ctl "$verb" --replace "$d/hello@$i.service" >/dev/null || return 1
		after=$(ctl cat hello@$i.service)
		[ "$before" != "$after" ] && grep -q 'sleep 2' <<<"$after" || { echo "cat unchanged for $i"; return 1; }
	done
	rm -rf "$d"
}
test_UnitSubmitReplace() { replace_flow submit 9; }
test_UnitLoadReplace() { replace_flow load 6; }
test_UnitStartReplace() { replace_flow start 3; }
test_UnitRestart() {
	new_cluster 1 || return 1
	ctl start hello@{1..3}.service >/dev/null && wait_active 3 || return 1
	ctl restart hello@{1..3}.service >/dev/null && wait_active 3 || return 1
	ctl stop hello@{1..3}.service >/dev/null && wait_active 0 || return 1
	ctl restart hello@{1..3}.service >/dev/null && wait_active 3 || return 1
}
test_UnitSSHActions() {
	new_cluster 1 || return 1
	ctl start --no-block hello.service >/dev/null && wait_active 1 || return 1
	local out
	out=$(ctl ssh hello.service echo foo 2>/dev/null | tr -d '\r')
	expect_eq "ssh echo" "$out" foo || return 1
	out=$(ctl status hello.service 2>&1)
	grep -q 'Active: active' <<<"$out" || { echo "status: $out"; return 1; }
	wait_until 10 eval 'ctl journal --sudo hello.service 2>&1 | grep -q "Hello, World!"' || { echo journal; return 1; }
}
test_UnitCat() {
	new_cluster 1 && ctl submit hello.service >/dev/null &&
		expect_eq cat "$(ctl cat hello.service)" "$(cat hello.service)"
}
test_UnitStatus() {
	local out
	new_cluster 1 && ctl load hello.service >/dev/null || return 1
	# systemctl status exits 3 for a loaded, inactive unit; fleet's test reads the output only.
	out=$(ctl status hello.service 2>&1)
	grep -q 'Loaded: loaded' <<<"$out" || { echo "status: $out"; return 1; }
}
test_ListUnitFilesOrder() {
	local i want
	new_cluster 1 || return 1
	for i in $(seq -w 1 20); do ctl submit hello@$i.service >/dev/null || return 1; done
	want=$(for i in $(seq -w 1 20); do echo hello@$i.service; done)
	expect_eq order "$(ctl list-unit-files --no-legend --fields unit)" "$want"
}

# ---- fleetctl_test.go, client_test.go
test_ClientVersion() {
	expect_eq version "$("$FLEET_BUILD/fleetctl" version)" "fleetctl version 1.0.0" &&
		"$FLEET_BUILD/fleetctl" help | grep -q 1.0.0 &&
		"$FLEET_BUILD/fleetctl" --help >/dev/null && "$FLEET_BUILD/fleetctl" -h >/dev/null &&
		"$FLEET_BUILD/fleetctl" >/dev/null
}
test_FleetctlWithEnv() {
	new_cluster 1 &&
		[ "$(FLEETCTL_ENDPOINT=http://$(cl_ip 1):54728 "$FLEET_BUILD/fleetctl" list-machines --no-legend | wc -l)" = 1 ]
}

# ---- client_test.go, tunnel_test.go
# OpenSSH asks about unknown hosts on the terminal: script(1) gives fleetctl one.
ssh_with_tty() { # KNOWN_HOSTS ANSWER ARGS...
	local kh=$1 answer=$2; shift 2
	{ sleep 1; printf '%s\n' "$answer"; sleep 4; } | timeout 30 script -qec "$FLEET_BUILD/fleetctl --endpoint http://$(cl_ip 1):54728 --strict-host-key-checking=true --known-hosts-file=$kh $*" /dev/null
}
test_KnownHostsVerification() {
	local kh id d
	new_cluster 1 || return 1
	kh=$(mktemp); id=$(cl_machine_id 1)
	ssh_with_tty "$kh" yes ssh "$id" uptime | grep -q 'load average' || { echo "first contact failed"; return 1; }
	ssh-keygen -F "$(cl_ip 1)" -f "$kh" >/dev/null || { echo "host not added to $kh"; return 1; }
	# Same machine, new host key: the connection must be refused.
	d=$CL_STATE/nodes/n1
	cl_stop 1 && rm -f "$d"/upper/etc/ssh/ssh_host_* && cl_boot 1 && wait_machines 1 || return 1
	ssh_with_tty "$kh" yes ssh "$id" uptime | grep -q 'load average' && { echo "changed host key accepted"; return 1; }
	: >"$kh"
	ssh_with_tty "$kh" yes ssh "$id" uptime | grep -q 'load average'
}
test_TunnelScheduleBatchUnits() {
	local err
	new_cluster 3 || return 1
	err=$(mktemp)
	"$FLEET_BUILD/fleetctl" --tunnel="$(cl_ip 1)" start hello.service >/dev/null 2>"$err" || { cat "$err"; return 1; }
	"$FLEET_BUILD/fleetctl" --tunnel="$(cl_ip 1)" start hello@{1..10}.service >/dev/null 2>>"$err" || { cat "$err"; return 1; }
	! grep -q Error "$err" || { cat "$err"; return 1; }
	wait_active 11 60
}
test_DynamicClusterMemberReboot() {
	local n
	new_cluster 3 || return 1
	ctl start --no-block conflict.{0..2}.service >/dev/null && wait_active 3 || return 1
	BEFORE=$(active_units)
	n=2; [ "$CUR" = 2 ] && CUR=1
	# The member is replaced: powered off, then back with a fresh disk (a new machine ID).
	cl_destroy $n && wait_machines 2 || return 1
	cl_boot $n && wait_machines 3 || return 1
	wait_until 60 count_is 1 changed_since_before || { echo "changed: $(changed_since_before)"; active_units; return 1; }
	wait_active 3 && no_conflict_violation
}
# Units whose machine differs from $BEFORE (with all 3 active again).
changed_since_before() {
	local now
	now=$(active_units)
	[ "$(grep -c . <<<"$now")" = 3 ] || { echo -1; return; }
	diff <(echo "$BEFORE") <(echo "$now") | grep -c '^>'
}

# ---- scheduling_test.go
test_ScheduleMachineOf() {
	local i m1 n
	new_cluster 3 || return 1
	for i in 0 1 2; do ctl start --no-block ping.$i.service pong.$i.service >/dev/null || return 1; done
	wait_active 6 || return 1
	for i in 0 1 2; do
		[ "$(machine_of ping.$i.service)" = "$(machine_of pong.$i.service)" ] || { echo "pair $i split"; return 1; }
	done
	m1=$(machine_of ping.1.service); n=$(node_of_machine "$m1")
	[ "$n" = "$CUR" ] && CUR=$((n % 3 + 1))
	cl_exec "$n" systemctl stop fleet || return 1
	wait_until 30 eval '[ -n "$(machine_of ping.1.service)" ] && [ "$(machine_of ping.1.service)" != "$m1" ] && [ "$(machine_of ping.1.service)" = "$(machine_of pong.1.service)" ]' ||
		{ echo "ping.1/pong.1 did not move together"; active_units; return 1; }
}
test_ScheduleConflicts() {
	new_cluster 3 || return 1
	ctl start --no-block conflict.{0..4}.service >/dev/null || return 1
	wait_unit_files 5 && wait_active 3 || return 1
	[ "$(active_units | awk '{print $2}' | sort -u | wc -l)" = 3 ] || { echo "not on 3 machines"; return 1; }
}
test_ScheduleOneWayConflict() {
	new_cluster 1 || return 1
	ctl start --no-block conflicts-with-hello.service hello.service >/dev/null || return 1
	wait_unit_files 2 && wait_active 1 || return 1
	[ "$(active_units | awk '{print $1}')" = conflicts-with-hello.service ] || return 1
	ctl destroy conflicts-with-hello.service >/dev/null || return 1
	wait_until 30 eval '[ "$(active_units | awk "{print \$1}")" = hello.service ]' || { active_units; return 1; }
}
test_ScheduleMultipleConflicts() {
	new_cluster 3 || return 1
	ctl start --no-block multiple-conflicts.{0..2}.service >/dev/null || return 1
	wait_unit_files 3 && wait_active 3 || return 1
	[ "$(active_units | awk '{print $2}' | sort -u | wc -l)" = 3 ]
}
test_ScheduleReplace() {
	local m0
	new_cluster 2 || return 1
	ctl start replace.0.service >/dev/null && wait_active 1 || return 1
	m0=$(machine_of replace.0.service)
	ctl start replace.1.service replace.2.service >/dev/null && wait_active 3 || return 1
	ctl start replace-kick0.service >/dev/null || return 1
	wait_until 30 eval '[ "$(n_active)" = 4 ] && [ "$(machine_of replace-kick0.service)" = "$m0" ] && [ "$(machine_of replace.0.service)" != "$m0" ]' ||
		{ echo "kick0 not on replace.0's machine, or replace.0 not moved"; active_units; return 1; }
}
test_ScheduleCircularReplace() {
	local d
	new_cluster 2 || return 1
	d=$(mktemp -d)
	printf '[Service]\nExecStart=/bin/sleep infinity\n\n[X-Fleet]\nReplaces=replace-kick0.service\n' >"$d/replace.0.service"
	cp replace-kick0.service "$d/"
	ctl start --no-block "$d/replace.0.service" >/dev/null && wait_active 1 || return 1
	ctl start --no-block "$d/replace-kick0.service" >/dev/null && wait_unit_files 2 && wait_active 2 || return 1
	no_double_run replace.0.service replace-kick0.service
}
test_ScheduleConditionMachineID() {
	local n d id
	new_cluster 3 || return 1
	d=$(mktemp -d)
	for n in 1 2 3; do
		id=$(cl_machine_id "$n")
		printf '[Service]\nExecStart=/bin/sleep infinity\n\n[X-Fleet]\nMachineID=%s\n' "$id" >"$d/pinned$n.service"
	done
	ctl start --no-block "$d"/pinned{1,2,3}.service >/dev/null && wait_active 3 || return 1
	for n in 1 2 3; do
		[ "$(machine_of pinned$n.service)" = "$(cl_machine_id "$n")" ] || { echo "pinned$n misplaced"; return 1; }
	done
}
test_ScheduleGlobalUnits() {
	new_cluster 3 || return 1
	ctl start --no-block hello.service goodbye.service >/dev/null && wait_active 2 || return 1
	ctl start --no-block global.service >/dev/null && wait_active 5 || return 1
	[ "$(active_units | grep -c '^global.service ')" = 3 ] || return 1
	ctl status global.service >/dev/null 2>&1 || { echo "status of a global unit failed"; return 1; }
	ctl restart global.service >/dev/null || { echo "restart of a global unit failed"; return 1; }
	wait_active 5 && [ "$(active_units | grep -c '^global.service ')" = 3 ]
}
test_ScheduleGlobalConflicts() {
	new_cluster 3 || return 1
	ctl start --no-block conflict-global.0.service >/dev/null && wait_active 3 || return 1
	ctl start --no-block conflict-global.1.service >/dev/null || return 1
	sleep 3
	[ "$(active_units | grep -c '^conflict-global.0.service ')" = 3 ] && [ "$(n_active)" = 3 ]
}
test_TemplatesWithSpecifiersInMetadata() {
	local n
	new_cluster 3 || return 1
	ctl submit metadata@.service >/dev/null || return 1
	for n in 1 2 3; do ctl start --no-block metadata@fleet-n$n.service >/dev/null || return 1; done
	wait_active 3 || return 1
	for n in 1 2 3; do
		[ "$(machine_of metadata@fleet-n$n.service)" = "$(cl_machine_id "$n")" ] || { echo "metadata@fleet-n$n misplaced"; return 1; }
	done
	! ctl start --block-attempts=20 metadata@invalid.service >/dev/null 2>&1
}

# ---- install_test.go
discovery_state() { ctl ssh discovery.service systemctl show --property=ActiveState discovery.service 2>/dev/null | tr -d '\r'; }
test_InstallUnit() {
	new_cluster 2 || return 1
	ctl load hello.service discovery.service >/dev/null || return 1
	expect_eq "discovery before" "$(discovery_state)" "ActiveState=inactive" || return 1
	ctl start hello.service >/dev/null || return 1
	wait_until 15 eval '[ "$(discovery_state)" = ActiveState=active ]' || return 1
	ctl stop hello.service >/dev/null || return 1
	wait_until 15 eval '[ "$(discovery_state)" = ActiveState=inactive ]'
}

# ---- machines_test.go (API)
api() { curl -s -o /dev/null -w '%{http_code} %{content_type}' "$@"; }
test_MachinesAPI() {
	local m0 m1 r bad url
	new_cluster 2 || return 1
	m0=$(cl_machine_id 1); m1=$(cl_machine_id 2); url=http://$(cl_ip 1):54728/fleet/v1/machines
	r=$(api "$url"); expect_eq list "$r" "200 application/json" || return 1
	r=$(api "$url?nextPageToken=EwBMLg=="); expect_eq badtoken "$r" "400 application/json" || return 1
	r=$(api -X PATCH -H 'Content-Type: application/json' "$url" \
		-d "[{\"op\":\"add\",\"path\":\"/$m0/metadata/foo\",\"value\":{\"value\":\"bar\"}},{\"op\":\"replace\",\"path\":\"/$m1/metadata/ping\",\"value\":{\"value\":\"splat\"}}]")
	expect_eq patch "${r%% *}" 204 || return 1
	curl -s "$url" | grep -q '"foo":"bar"' && curl -s "$url" | grep -q '"ping":"splat"' || { curl -s "$url"; return 1; }
	for bad in '[{"op":"noop","path":"/'$m0'/metadata/foo","value":{"value":"x"}}]' \
		'[{"op":"add","path":"/'$m0'/foo","value":{"value":"x"}}]' \
		'[{"op":"add","path":"/'$m0'/metadata/foo","value":{"value":""}}]'; do
		r=$(api -X PATCH -H 'Content-Type: application/json' "$url" -d "$bad")
		expect_eq "bad patch $bad" "$r" "400 application/json" || return 1
	done
	r=$(api -X PATCH -H 'Content-Type: application/json' "$url" -d "[{\"op\":\"remove\",\"path\":\"/$m0/metadata/never\"}]")
	expect_eq remove "${r%% *}" 204
}

# ---- node_test.go, cluster_test.go
test_NodeShutdown() {
	local id
	new_cluster 1 || return 1
	id=$(cl_machine_id 1)
	ctl start pin@$id.service >/dev/null && wait_active 1 || return 1
	cl_boot 2 && NODES+=(2) && wait_machines 2 || return 1
	CUR=2
	cl_exec 1 systemctl stop fleet || return 1
	wait_machines 1 && wait_active 0 || return 1
	! cl_exec 1 systemctl is-active -q pin@$id.service
}
test_DetectMachineId() {
	local out
	new_cluster 2 || return 1
	cl_machine_id 1 >"$CL_STATE/nodes/n2/merged/etc/machine-id"
	cl_exec 2 systemctl restart fleet || return 1
	sleep 2
	cl_exec 2 systemctl is-active -q fleet || { echo "fleet on the duplicate is not active"; return 1; }
	CUR=2
	out=$(ctl list-machines 2>&1) && { echo "list-machines via duplicate succeeded: $out"; return 1; }
	grep -q 'fleet server unable to communicate with etcd' <<<"$out" || { echo "$out"; return 1; }
}
test_DynamicClusterNewMemberUnitMigration() {
	local m1 empty n
	new_cluster 4 || return 1
	ctl start --no-block conflict.{0..2}.service >/dev/null && wait_active 3 || return 1
	m1=$(machine_of conflict.1.service)
	empty=$(for n in 1 2 3 4; do cl_machine_id $n; done | grep -vxF -f <(active_units | awk '{print $2}'))
	n=$(node_of_machine "$m1"); [ "$n" = "$CUR" ] && CUR=$((n % 4 + 1))
	cl_ssh "$n" systemctl stop fleet || return 1
	wait_until 30 eval '[ "$(machine_of conflict.1.service)" = "$empty" ]' || { active_units; return 1; }
	wait_active 3
}
test_SingleNodeConnectivityLoss() {
	local u
	new_cluster 1 || return 1
	ctl submit single@1.service global@1.service >/dev/null &&
		ctl load --no-block single@2.service global@2.service >/dev/null &&
		ctl start --no-block single@3.service global@3.service >/dev/null || return 1
	wait_active 2 || return 1
	cl_cut_etcd 1
	sleep 10 # agent_ttl (3 s) + 7 s
	for u in single@3 global@3; do
		cl_exec 1 systemctl is-active -q $u.service || { echo "$u stopped during the outage"; cl_heal_etcd 1; return 1; }
	done
	[ "$(cl_exec 1 systemctl is-enabled single@2.service)" = linked-runtime ] || { echo "single@2 not linked"; cl_heal_etcd 1; return 1; }
	cl_heal_etcd 1
	wait_machines 1 && wait_active 2 || return 1
	! cl_exec 1 journalctl -b --no-pager | grep -E 'Stopping (single|global)@'
}

# ---- server_test.go, shutdown_test.go
test_ReconfigureServer() {
	new_cluster 1 || return 1
	cl_exec 1 test -S /var/run/fleet.sock || return 1
	ctl start hello.service >/dev/null && ctl unload hello.service >/dev/null || return 1
	cl_exec 1 systemctl kill --kill-whom=main -s HUP fleet.service || return 1
	wait_until 10 eval 'fleet_log 1 | grep -q "Reloading configuration"' || return 1
	ctl list-units >/dev/null || return 1
	! fleet_log 1 | grep -q 'Failed serving HTTP on listener' && cl_exec 1 systemctl is-active -q fleet
}
test_Shutdown() {
	new_cluster 1 || return 1
	cl_exec 1 systemctl stop fleet || return 1
	expect_eq state "$(cl_exec 1 systemctl show --value -p ActiveState fleet) $(cl_exec 1 systemctl show --value -p Result fleet)" "inactive success"
}
test_ShutdownVsMonitor() {
	new_cluster 1 || return 1
	cl_cut_etcd 1
	wait_until 30 eval 'fleet_log 1 | grep -q "Server monitor triggered"' || { cl_heal_etcd 1; return 1; }
	cl_exec 1 systemctl stop fleet
	cl_heal_etcd 1
	expect_eq state "$(cl_exec 1 systemctl show --value -p ActiveState fleet) $(cl_exec 1 systemctl show --value -p Result fleet)" "inactive success"
}

TESTS=$(declare -F | awk '{print $3}' | grep '^test_')
why=$(cl_why_not)
if [ -n "$why" ]; then
	for t in $TESTS; do t_skip "cluster.${t#test_}" "$why"; done
	exit 0
fi
cl_init >&2 || { for t in $TESTS; do t_fail "cluster.${t#test_}" "cluster setup failed"; done; exit 1; }
for t in $TESTS; do
	[ -n "${FLEET_CL_ONLY:-}" ] && [[ $t != *$FLEET_CL_ONLY* ]] && continue
	t_run "cluster.${t#test_}" "$t"
done
for n in "${NODES[@]}"; do cl_destroy "$n"; done
exit 0
