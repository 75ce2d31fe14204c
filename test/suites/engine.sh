#!/usr/bin/env bash
# engine.sh: the engine (applets/engine.c + lib/scheduler.c) against a real etcd, in isolation:
# `fleet scheduler` processes (engine only: no agent, no presence of their own) on a private
# etcd, with machines and units written straight into the registry by curl, so nothing but the
# engine acts. Covers leader election, engine/version, failover and graceful release, placement
# and unschedulable reasons, machine loss, the version gate, the takeover of a v0 lease, and the
# cost of an idle cluster (lease renewals only). Every process started here is recorded and
# killed by PID on exit.
. "$(dirname "$0")/../lib/testlib.sh"

T=$(mktemp -d /tmp/fleet-engine.XXXXXX)
PIDS=()
OWN_ETCD=
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
	if [ -n "$OWN_ETCD" ]; then
		FLEET_TEST_STATE=$T/etcd "$TL_TOP/test/lib/etcd.sh" stop "$OWN_ETCD" >/dev/null 2>&1
	fi
	rm -rf "$T"
}
trap cleanup EXIT

N=0
new_prefix() { N=$((N + 1)); PREFIX=/fleet-test-engine/$$-$N/; }

# ---- etcd access ----
k() { echo "$EP/v2/keys$PREFIX$1"; }
get() { curl -fs --max-time 2 "$(k "$1")" | jq -r .node.value; }
exists() { curl -fs --max-time 2 "$(k "$1")" >/dev/null; }
put() { curl -fs --max-time 2 -X PUT "$(k "$1")" --data-urlencode "value=$2" ${3:+-d ttl=$3} >/dev/null; }
del() { curl -fs --max-time 2 -X DELETE "$(k "$1")" >/dev/null; }
mod_index() { curl -fs --max-time 2 "$(k "$1")" | jq -r .node.modifiedIndex; }

# add_machine ID [k=v,...]: a machine object with a long TTL (nobody heartbeats it)
add_machine() {
	local md='{}'
	if [ -n "${2:-}" ]; then
		md=$(tr ',' '\n' <<<"$2" | jq -R 'split("=") | {(.[0]): .[1]}' | jq -cs add)
	fi
	put "machines/$1/object" "{\"ID\":\"$1\",\"PublicIP\":\"10.0.0.1\",\"Metadata\":$md,\"Capabilities\":{\"DISABLE_ENGINE\":true,\"GRPC\":false},\"Version\":\"1.0.0\"}" 600
}

# add_unit NAME STATE [X-Fleet lines...]: unit/<sha1>, job/NAME/object, job/NAME/target-state
add_unit() {
	local name=$1 state=$2 raw hash arr
	shift 2
	raw=$(printf '[Service]\nExecStart=/bin/sleep 1000\n')
	if [ $# -gt 0 ]; then
		raw+=$'\n\n[X-Fleet]'
		for l in "$@"; do raw+=$'\n'"$l"; done
	fi
	raw+=$'\n'
	hash=$(printf '%s' "$raw" | sha1sum | cut -c1-40)
	arr=$(sed 's/../0x& /g' <<<"$hash" | xargs printf '%d,' | sed 's/,$//')
	put "unit/$hash" "$(jq -cn --arg r "$raw" '{Raw: $r}')" || return 1
	put "job/$name/object" "{\"Name\":\"$name\",\"UnitHash\":[$arr]}" || return 1
	put "job/$name/target-state" "$state"
}
target() { get "job/$1/target"; }
reason() { get "job/$1/unschedulable"; }
lease_holder() { get lease/engine-leader | jq -r .MachineID 2>/dev/null; }

# ---- a slow store for long batches ----
# A TCP proxy in front of etcd that delays every write below job/ (the engine's actions) by
# $1 seconds and nothing else (lease, watch, reads), so a batch of a few hundred placements
# outlives several lease renewals. Sets PROXY_EP.
start_slow_proxy() {
	cat >"$T/proxy.py" <<'PY'
import asyncio, sys
up_host, up_port, delay = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
async def pipe(reader, writer, slow):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            line = data.split(b"\r\n", 1)[0]
            if slow and (line.startswith(b"PUT ") or line.startswith(b"DELETE ")) and b"/job/" in line:
                await asyncio.sleep(delay)
            writer.write(data)
            await writer.drain()
    except Exception:
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass
async def handle(cr, cw):
    try:
        ur, uw = await asyncio.open_connection(up_host, up_port)
    except Exception:
        cw.close()
        return
    await asyncio.gather(pipe(cr, uw, True), pipe(ur, cw, False))
async def main():
    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(srv.sockets[0].getsockname()[1], flush=True)
    async with srv:
        await srv.serve_forever()
asyncio.run(main())
PY
	local hp=${EP#http://}
	rm -f "$T/proxy.port"
	python3 "$T/proxy.py" "${hp%:*}" "${hp##*:}" "$1" >"$T/proxy.port" 2>"$T/proxy.log" &
	PIDS+=($!)
	wait_until 5 eval '[ -s "$T/proxy.port" ]' || { echo "proxy did not start"; cat "$T/proxy.log"; return 1; }
	PROXY_EP=http://127.0.0.1:$(head -1 "$T/proxy.port")
}

# add_many_units COUNT PREFIX: COUNT launched units PREFIX-N.service sharing one unit file, in
# one curl process (keep-alive)
add_many_units() {
	local n=$1 p=$2 i raw hash arr
	raw=$(printf '[Service]\nExecStart=/bin/sleep 1000\n')$'\n'
	hash=$(printf '%s' "$raw" | sha1sum | cut -c1-40)
	arr=$(sed 's/../0x& /g' <<<"$hash" | xargs printf '%d,' | sed 's/,$//')
	put "unit/$hash" "$(jq -cn --arg r "$raw" '{Raw: $r}')" || return 1
	for i in $(seq "$n"); do
		printf 'url = "%s"\nrequest = "PUT"\ndata-urlencode = "value={\\"Name\\":\\"%s\\",\\"UnitHash\\":[%s]}"\noutput = "/dev/null"\nnext\n' \
			"$(k "job/$p-$i.service/object")" "$p-$i.service" "$arr"
		printf 'url = "%s"\nrequest = "PUT"\ndata = "value=launched"\noutput = "/dev/null"\nnext\n' "$(k "job/$p-$i.service/target-state")"
	done | sed '$d' >"$T/many.curl"
	curl -fs -K "$T/many.curl"
}
# add_many_machines COUNT PREFIX: machines PREFIX001.. with a long TTL, in one curl process
add_many_machines() {
	local i id
	for i in $(seq -w "$1"); do
		id=$2$i
		printf 'url = "%s"\nrequest = "PUT"\ndata-urlencode = "value={\\"ID\\":\\"%s\\",\\"PublicIP\\":\\"10.0.0.1\\",\\"Metadata\\":{},\\"Capabilities\\":{\\"DISABLE_ENGINE\\":true,\\"GRPC\\":false},\\"Version\\":\\"1.0.0\\"}"\ndata = "ttl=600"\noutput = "/dev/null"\nnext\n' \
			"$(k "machines/$id/object")" "$id"
	done | sed '$d' >"$T/machines.curl"
	curl -fs -K "$T/machines.curl"
}
count_targets() { curl -fs --max-time 5 "$(k job)?recursive=true" | jq '[.node.nodes[]?.nodes[]? | select(.key | endswith("/target"))] | length'; }
all_targets() { [ "$(count_targets)" -ge "$1" ]; }

# ---- schedulers ----
new_id() { od -An -tx1 -N16 /dev/urandom | tr -d ' \n'; }

# start_sched NAME ID [ENDPOINT [CONFIG LINES...]]: `fleet scheduler` on $PREFIX, reconcile
# interval 1 s (lease TTL 5 s)
start_sched() {
	local name=$1 id=$2 ep=${3:-$EP} l
	echo "$id" >"$T/$name.machine-id"
	{
		echo "etcd_servers=$ep"
		echo "etcd_key_prefix=$PREFIX"
		echo "engine_reconcile_interval=1"
		echo "verbosity=1"
		echo "api_listen=unix:$T/$name.sock"
		for l in "${@:4}"; do echo "$l"; done
	} >"$T/$name.conf"
	rm -f "$T/$name.sock"
	FLEET_MACHINE_ID_FILE=$T/$name.machine-id "$FLEET_BIN" scheduler -config "$T/$name.conf" \
		>"$T/$name.log" 2>&1 </dev/null &
	PIDS+=($!)
	eval "PID_$name=$!"
}
pid_of() { eval "echo \$PID_$1"; }
logged() { grep -qF -- "$2" "$T/$1.log"; }
count_logged() { grep -cF -- "$2" "$T/$1.log"; }
wait_logged() { wait_until "${3:-10}" logged "$1" "$2" || { echo "no '$2' in $1's log"; tail -20 "$T/$1.log"; return 1; }; }
stop_sched() {
	local pid
	pid=$(pid_of "$1")
	kill -"${2:-TERM}" "$pid" 2>/dev/null
	for _ in $(seq 300); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -0 "$pid" 2>/dev/null && { kill -9 "$pid"; wait "$pid" 2>/dev/null; return 124; }
	wait "$pid"
}
is_target() { [ "$(target "$1")" = "$2" ]; }
has_target() { exists "job/$1/target"; }
has_reason() { [ "$(reason "$1")" = "$2" ]; }
no_reason() { ! exists "job/$1/unschedulable"; }
lease_is() { [ "$(lease_holder)" = "$1" ]; }

# ---- cases ----

c_election() {
	local a b winner loser
	new_prefix
	a=$(new_id) b=$(new_id)
	start_sched ea "$a"
	start_sched eb "$b"
	wait_until 10 exists lease/engine-leader || { tail "$T/ea.log" "$T/eb.log"; return 1; }
	winner=$(lease_holder)
	case $winner in
	"$a") winner=ea loser=eb ;;
	"$b") winner=eb loser=ea ;;
	*) echo "lease names [$winner]"; return 1 ;;
	esac
	expect_eq "lease version" "$(get lease/engine-leader | jq -r .Version)" 1 || return 1
	expect_eq "engine/version" "$(get engine/version)" 1 || return 1
	wait_logged "$winner" "Engine leadership acquired" || return 1
	wait_logged "$loser" "Engine leader is $(lease_holder)" || return 1
	logged "$loser" "Engine leadership acquired" && { echo "both acquired"; return 1; }
	expect_eq "version updates logged" \
		"$(($(count_logged ea "Updated cluster engine version from 0 to 1") + $(count_logged eb "Updated cluster engine version from 0 to 1")))" 1 || return 1
	# The lease is renewed: still there well after its 5 s TTL.
	sleep 6
	expect_eq "holder after 6 s" "$(lease_holder)" "$(cat "$T/$winner.machine-id")" || return 1

	# Graceful stop releases at once; the other takes over well before the TTL ran out.
	local t0=$SECONDS
	stop_sched "$winner"; expect_eq "exit status" "$?" 0 || return 1
	wait_until 4 lease_is "$(cat "$T/$loser.machine-id")" || { echo "no prompt takeover"; tail "$T/$loser.log"; return 1; }
	[ $((SECONDS - t0)) -le 4 ] || return 1
	wait_logged "$loser" "Engine leadership acquired" || return 1

	# A crash: the lease runs out (5 s) and a new scheduler takes over.
	start_sched "$winner" "$(cat "$T/$winner.machine-id")"
	wait_logged "$winner" "Engine leader is $(cat "$T/$loser.machine-id")" || return 1
	stop_sched "$loser" KILL
	wait_until 12 lease_is "$(cat "$T/$winner.machine-id")" || { echo "no takeover after a crash"; tail "$T/$winner.log"; return 1; }
	stop_sched "$winner"
}

c_schedule() {
	local id
	new_prefix
	add_machine m1 region=eu
	add_machine m2 region=us
	add_unit a.service launched
	add_unit b.service launched
	add_unit eu.service launched "MachineMetadata=region=eu"
	add_unit pinned.service launched "MachineID=m3"
	add_unit off.service inactive
	add_unit follow.service loaded "MachineOf=pinned.service"
	id=$(new_id)
	start_sched s "$id"
	wait_until 10 has_target a.service || { tail -20 "$T/s.log"; return 1; }
	wait_until 5 has_target b.service || return 1
	[ "$(target a.service)" != "$(target b.service)" ] || { echo "a and b on one machine"; return 1; }
	wait_until 5 is_target eu.service m1 || return 1
	has_target off.service && { echo "inactive unit scheduled"; return 1; }
	wait_until 5 has_reason pinned.service "MachineID 'm3' does not match any machine" || { echo "reason: $(reason pinned.service)"; return 1; }
	wait_until 5 has_reason follow.service "required peer 'pinned.service' is not scheduled" || { echo "reason: $(reason follow.service)"; return 1; }
	wait_logged s "Scheduled Unit(a.service) to Machine(" || return 1

	# The missing machine appears: both go there, the reasons are cleared.
	add_machine m3
	wait_until 5 is_target pinned.service m3 || return 1
	wait_until 5 is_target follow.service m3 || return 1
	wait_until 5 no_reason pinned.service || return 1
	wait_until 5 no_reason follow.service || return 1

	# Unloading unschedules.
	put job/a.service/target-state inactive
	wait_until 5 eval '! has_target a.service' || return 1
	wait_logged s "Unscheduled Job(a.service) from Machine(" || return 1

	# Machine loss moves only the lost machine's units.
	local eu_idx b_before b_idx
	b_before=$(target b.service)
	b_idx=$(mod_index job/b.service/target)
	del machines/m1/object
	wait_until 5 eval '[ "$(target eu.service)" = "" ] && has_reason eu.service "no machine has region=eu"' || { echo "eu: $(target eu.service) $(reason eu.service)"; return 1; }
	if [ "$b_before" != m1 ]; then
		expect_eq "b untouched" "$(mod_index job/b.service/target)" "$b_idx" || return 1
	else
		wait_until 5 eval '[ -n "$(target b.service)" ] && [ "$(target b.service)" != m1 ]' || return 1
	fi
	eu_idx=$(mod_index job/pinned.service/target)
	sleep 2
	expect_eq "pinned untouched" "$(mod_index job/pinned.service/target)" "$eu_idx" || return 1
	stop_sched s
}

# A new leader takes the schedule as it finds it: nothing moves on failover.
c_failover_no_storm() {
	local a b i before after leader follower
	new_prefix
	add_machine m1
	add_machine m2
	add_machine m3
	for i in 1 2 3 4 5 6; do add_unit "f$i.service" launched; done
	add_unit fconf.service launched "Conflicts=f*.service"
	a=$(new_id) b=$(new_id)
	start_sched fa "$a"
	wait_until 10 lease_is "$a" || { tail -20 "$T/fa.log"; return 1; }
	start_sched fb "$b"
	for i in 1 2 3 4 5 6; do wait_until 5 has_target "f$i.service" || return 1; done
	wait_until 5 eval 'exists job/fconf.service/unschedulable' || return 1
	wait_logged fb "Engine leader is $a" || return 1
	before=$(for i in 1 2 3 4 5 6; do mod_index "job/f$i.service/target"; done; mod_index job/fconf.service/unschedulable)
	stop_sched fa KILL
	wait_until 12 lease_is "$b" || { echo "no takeover"; tail -20 "$T/fb.log"; return 1; }
	wait_logged fb "Engine leadership acquired" || return 1
	sleep 3
	after=$(for i in 1 2 3 4 5 6; do mod_index "job/f$i.service/target"; done; mod_index job/fconf.service/unschedulable)
	expect_eq "schedule after failover" "$after" "$before" || return 1
	logged fb "Scheduled Unit(" && { echo "new leader scheduled something"; return 1; }
	stop_sched fb
}

# An idle cluster costs the leader one compare-and-swap per interval (the lease) and nothing
# else: the schedule comes from the mirror.
c_idle_cost() {
	local id s0 s1 d
	new_prefix
	add_machine m1
	add_machine m2
	for i in 1 2 3 4 5 6; do add_unit "idle$i.service" launched; done
	add_unit stuck.service launched "MachineID=nowhere"
	id=$(new_id)
	start_sched s "$id"
	wait_until 10 has_reason stuck.service "MachineID 'nowhere' does not match any machine" || { tail -20 "$T/s.log"; return 1; }
	for i in 1 2 3 4 5 6; do wait_until 5 has_target "idle$i.service" || return 1; done
	sleep 2
	s0=$(curl -fs "$EP/v2/stats/store")
	sleep 5
	s1=$(curl -fs "$EP/v2/stats/store")
	for f in setsSuccess setsFail createSuccess createFail deleteSuccess deleteFail compareAndDeleteSuccess \
		compareAndDeleteFail compareAndSwapFail updateSuccess updateFail; do
		d=$(($(jq -r ".$f" <<<"$s1") - $(jq -r ".$f" <<<"$s0")))
		expect_eq "idle $f" "$d" 0 || return 1
	done
	d=$(($(jq -r .compareAndSwapSuccess <<<"$s1") - $(jq -r .compareAndSwapSuccess <<<"$s0")))
	[ "$d" -ge 3 ] && [ "$d" -le 7 ] || { echo "lease renewals in 5 s: $d"; return 1; }
	local cas=$d
	d=$(($(jq -r .getsSuccess <<<"$s1") - $(jq -r .getsSuccess <<<"$s0")))
	expect_eq "idle gets" "$d" 0 || return 1
	# etcd v2 counts a watch as a failed get (twice: when it waits and when it fires); the
	# mirror re-watches once per event, i.e. once per renewal.
	d=$(($(jq -r .getsFail <<<"$s1") - $(jq -r .getsFail <<<"$s0")))
	[ "$d" -le $((2 * cas + 2)) ] || { echo "watch/get requests in 5 s: $d for $cas renewals"; return 1; }
	stop_sched s
}

c_version_gate() {
	local id
	new_prefix
	put engine/version 2
	add_machine m1
	add_unit a.service launched
	id=$(new_id)
	start_sched s "$id"
	wait_logged s "newer than ours" || return 1
	sleep 2
	exists lease/engine-leader && { echo "took the lease of a newer cluster"; return 1; }
	has_target a.service && { echo "scheduled in a newer cluster"; return 1; }
	expect_eq "engine/version" "$(get engine/version)" 2 || return 1
	stop_sched s
}

c_takeover_v0() {
	local id
	new_prefix
	put lease/engine-leader '{"MachineID":"old-engine","Version":0}' 3
	add_machine m1
	add_unit a.service launched
	id=$(new_id)
	start_sched s "$id"
	wait_until 5 lease_is "$id" || { tail -20 "$T/s.log"; return 1; }
	expect_eq "lease version" "$(get lease/engine-leader | jq -r .Version)" 1 || return 1
	wait_logged s "Took over engine leadership from old-engine" || return 1
	# It waits out the old lease (3 s) before acting, then schedules.
	wait_until 8 is_target a.service m1 || return 1
	stop_sched s
}

# A batch longer than several lease renewals (every write below job/ takes 0.5 s through the
# proxy) goes on while the lease is renewed beside it: one plan, every unit scheduled once,
# the lease kept throughout.
c_long_batch() {
	local id n=300 idx0 idx1 t0
	new_prefix
	add_machine m1
	add_machine m2
	add_machine m3
	add_many_units $n lb || return 1
	start_slow_proxy 0.5 || return 1
	id=$(new_id)
	start_sched lb "$id" "$PROXY_EP" etcd_request_timeout=5
	wait_until 15 eval '[ "$(count_targets)" -ge 1 ]' || { tail -20 "$T/lb.log"; return 1; }
	idx0=$(mod_index lease/engine-leader) t0=$SECONDS
	wait_until 60 all_targets $n || { echo "placed $(count_targets) of $n"; tail -20 "$T/lb.log"; return 1; }
	idx1=$(mod_index lease/engine-leader)
	[ $((SECONDS - t0)) -ge 2 ] || { echo "batch took $((SECONDS - t0)) s: too short to test renewals"; return 1; }
	[ "$idx1" -gt "$idx0" ] || { echo "lease not renewed during the batch"; return 1; }
	expect_eq "lease holder" "$(lease_holder)" "$id" || return 1
	expect_eq "plans with changes" "$(grep -c 'Engine pass at registry index .*: [0-9]* changes' "$T/lb.log")" 1 || return 1
	expect_eq "schedules" "$(count_logged lb 'Scheduled Unit(')" $n || return 1
	logged lb "leadership lost" && { echo "lost the lease"; return 1; }
	logged lb "changed concurrently" && { echo "a unit was scheduled twice"; return 1; }
	# Balanced: 100 each.
	expect_eq "per machine" "$(curl -fs "$(k job)?recursive=true" | jq -c '[.node.nodes[]?.nodes[]? | select(.key | endswith("/target")) | .value] | group_by(.) | map(length)')" "[100,100,100]" || return 1
	stop_sched lb
}

# The lease taken away in the middle of a batch: no write after the engine learnt it; once the
# other lease runs out the engine takes over again and places the rest, each unit once.
c_lease_lost_mid_batch() {
	local id n=300 c1 c2
	new_prefix
	add_machine m1
	add_machine m2
	add_many_units $n ll || return 1
	start_slow_proxy 0.5 || return 1
	id=$(new_id)
	start_sched ll "$id" "$PROXY_EP" etcd_request_timeout=5
	wait_until 15 eval '[ "$(count_targets)" -ge 20 ]' || { tail -20 "$T/ll.log"; return 1; }
	put lease/engine-leader '{"MachineID":"other-engine","Version":1}' 10 || return 1
	wait_logged ll "Engine leadership lost" 5 || return 1
	# Writes sent before that land within the proxy's half second.
	sleep 1.5
	c1=$(count_targets)
	sleep 2
	c2=$(count_targets)
	expect_eq "targets after the loss" "$c2" "$c1" || return 1
	[ "$c1" -lt $n ] || { echo "the batch was over before the loss ($c1)"; return 1; }
	logged ll "Engine lease lost during reconciliation, dropping" || { tail -20 "$T/ll.log"; return 1; }
	expect_eq "holder" "$(lease_holder)" other-engine || return 1
	wait_until 30 all_targets $n || { echo "placed $(count_targets) of $n"; tail -20 "$T/ll.log"; return 1; }
	expect_eq "lease holder" "$(lease_holder)" "$id" || return 1
	expect_eq "schedules" "$(count_logged ll 'Scheduled Unit(')" $n || return 1
	logged ll "changed concurrently" && { echo "a unit was scheduled twice"; return 1; }
	stop_sched ll
}

# Settling after taking the lease, with many machines: the engine waits for a machine it has
# not seen yet (its unit stays), but not for one it saw and that is gone since.
c_settle_many() {
	local id t0
	new_prefix
	add_many_machines 300 m || return 1
	add_unit a.service launched
	put job/a.service/target zz-late
	add_unit b.service launched
	put job/b.service/target m150
	add_unit c.service launched
	id=$(new_id)
	start_sched st "$id" "$EP" "agent_ttl=15s"
	wait_until 10 lease_is "$id" || { tail -20 "$T/st.log"; return 1; }
	sleep 2
	has_target c.service && { echo "placed while a machine it never saw may be coming back"; return 1; }
	add_machine zz-late
	wait_until 5 has_target c.service || { tail -20 "$T/st.log"; return 1; }
	expect_eq "a stays" "$(target a.service)" zz-late || return 1
	expect_eq "b stays" "$(target b.service)" m150 || return 1
	t0=$SECONDS
	del machines/m150/object
	wait_until 4 eval '[ -n "$(target b.service)" ] && [ "$(target b.service)" != m150 ]' || { echo "b: $(target b.service)"; tail -20 "$T/st.log"; return 1; }
	[ $((SECONDS - t0)) -le 4 ] || return 1
	expect_eq "a still" "$(target a.service)" zz-late || return 1
	stop_sched st
}

if [ -z "$(command -v etcd)" ] || [ ! -x "$FLEET_BIN" ]; then
	for c in election schedule failover_no_storm idle_cost version_gate takeover_v0 long_batch lease_lost_mid_batch \
		settle_many; do
		t_skip "engine.$c" "no etcd or no $FLEET_BIN"
	done
	exit 0
fi
OWN_ETCD=engine-$$
mkdir -p "$T/etcd"
EP=$(FLEET_TEST_STATE=$T/etcd "$TL_TOP/test/lib/etcd.sh" start "$OWN_ETCD" 1) || { t_fail engine.etcd "private etcd failed"; exit 1; }
EP=${EP%%,*}

t_run engine.election c_election
t_run engine.schedule c_schedule
t_run engine.failover_no_storm c_failover_no_storm
t_run engine.idle_cost c_idle_cost
t_run engine.version_gate c_version_gate
t_run engine.takeover_v0 c_takeover_v0
if command -v python3 >/dev/null; then
	t_run engine.long_batch c_long_batch
	t_run engine.lease_lost_mid_batch c_lease_lost_mid_batch
else
	t_skip engine.long_batch "no python3 (the slow proxy)"
	t_skip engine.lease_lost_mid_batch "no python3 (the slow proxy)"
fi
t_run engine.settle_many c_settle_many
exit 0
