#!/usr/bin/env bash
# bench.sh: `./build.sh bench` — how fleet scales (spec §9: etcd load, slow fleetctl, reschedule
# storms), against a real etcd (test/lib/etcd.sh, a private instance on tmpfs). Not part of
# `./build.sh test`. Prints a table of medians over repeated runs, writes it to bench/RESULTS.md
# (with the raw numbers in bench/results.tsv and profiles of missed targets) and plots cost
# against cluster size in bench/scale.png (gnuplot, installed as gnuplot-nox when missing).
#
# Sections (each skipped with a reason when it cannot run or the time budget is spent):
#   etcd       etcd's own round trip (keep-alive GET and PUT, curl GET) and its write capacity
#              through fleet's client (fleet-bench write): the floors under the write-bound
#              targets (submit's 3,000 writes at 1/16/32/64 units in flight, placement's 10,000
#              creates at 16/32/64, TTL refreshes at 32), each in a fresh prefix, deleted after
#   binary     size of the stripped static binary
#   submit     fleetd (with a real `systemd --user`, test/lib/systemd.sh) on an empty registry:
#              idle RSS, `fleetctl submit` of 1,000 units in one call, 100 single submits
#   list       fleetd with 100 / 1,000 / 10,000 launched units (scheduled, with unit states):
#              list-unit-files and list-units through the API and the etcd driver, RSS, and
#              the CPU cost of the registry snapshot a daemon rebuilds after every change
#   engine     `fleet scheduler` placing 10,000 units on 1,000 simulated machines from a cold
#              start; etcd requests and bytes of the engine per reconcile, idle and with one
#              changed unit
#   failover   10,000 units on 200 simulated machines (50 each): power cut of the busiest
#              machine, time until all its units are scheduled elsewhere
#   cluster    nspawn node with the real systemd (test/cluster/cluster.sh): `fleetctl start
#              --no-block` to the unit's process running
#
# Simulated machines: test/helper/fleet-bench.c `sim` (a load generator linking libfleet-core,
# not part of the fleet binary, never used by the functional tests) registers machines,
# heartbeats them and publishes job-state heartbeats and unit states with the same registry
# calls as fleetd's agent, keeping units in memory instead of calling systemd.
#
# Environment: BENCH_REPS (quick measurements, default 7), BENCH_SLOW_REPS (placement,
# failover; default 2, failover 3), BENCH_SUBMIT_REPS (submit of 1,000; default 7),
# BENCH_ETCD_REPS (etcd write floors: submit's,
# default 3; placement's 2), BENCH_BUDGET (seconds, default 900),
# BENCH_AGENT_TTL (default 30, fleet's), BENCH_SECTIONS (space-separated subset),
# BENCH_OUT (default bench/). Every process started is recorded and stopped by PID.
set -uo pipefail
cd "$(dirname "$0")/.."
TOP=$PWD
export LC_ALL=C
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
FLEET_BUILD=${FLEET_BUILD:-$TOP/build}
FLEET=$FLEET_BUILD/fleet
FB=$FLEET_BUILD/test/fleet-bench
OUT=${BENCH_OUT:-$TOP/bench}
REPS=${BENCH_REPS:-7}
SLOW_REPS=${BENCH_SLOW_REPS:-2}
SUBMIT_REPS=${BENCH_SUBMIT_REPS:-7}
FAIL_REPS=${BENCH_FAIL_REPS:-3}
ETCD_REPS=${BENCH_ETCD_REPS:-3}
BUDGET=${BENCH_BUDGET:-900}
TTL=${BENCH_AGENT_TTL:-30}
SECTIONS=${BENCH_SECTIONS:-etcd binary submit list engine failover cluster}
START=$SECONDS
# Before any result is written: bench/ is part of the tree, so afterwards it is always dirty.
REV=$(git -C "$TOP" describe --always --dirty 2>/dev/null || echo '?')

log() { printf '[bench %4ds] %s\n' $((SECONDS - START)) "$*" >&2; }

[ -x "$FLEET" ] && [ -x "$FB" ] || { log "build first: no $FLEET or $FB"; exit 1; }
command -v etcd >/dev/null || { log "etcd not installed (Debian etcd-server)"; exit 1; }

if [ -w /dev/shm ]; then TMPROOT=/dev/shm; else TMPROOT=/tmp; fi
T=$(mktemp -d "$TMPROOT/fleet-bench.XXXXXX")
export FLEET_TEST_STATE=$T/state
mkdir -p "$FLEET_TEST_STATE" "$OUT"
PIDS=()
SD_STARTED=
ETCD_NAME=bench$$
cleanup() {
	local p
	trap - EXIT
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${PIDS[@]}"; do
		for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	[ -n "$SD_STARTED" ] && sd_stop >/dev/null 2>&1
	"$TOP/test/lib/etcd.sh" stop "$ETCD_NAME" >/dev/null 2>&1
	"$TOP/test/lib/etcd.sh" stop "floor$ETCD_NAME" >/dev/null 2>&1
	exec 7>&- 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- helpers ----

RES=$T/results.tsv   # id, label, value, unit, target, n, note
: >"$RES"
NOTES=$T/notes.md
: >"$NOTES"
HOT=$T/hotspots.md
: >"$HOT"

# result ID LABEL VALUE UNIT TARGET N NOTE: TARGET "" for none
result() {
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" "$6" "${7:-}" >>"$RES"
	log "$2: $3 $4${5:+ (target $5)}${7:+ [$7]}"
}
skip() { # ID LABEL REASON
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "skipped" "" "" 0 "$3" >>"$RES"
	log "$2: skipped: $3"
}
note() { printf '%s\n' "$*" >>"$NOTES"; }

median() { printf '%s\n' "$@" | grep -v '^$' | sort -g |
	awk '{a[NR]=$1} END {if (NR == 0) print "nan"; else if (NR % 2) print a[(NR+1)/2]; else printf "%.4g\n", (a[NR/2]+a[NR/2+1])/2}'; }
fmt() { awk -v x="$1" -v d="${2:-1}" 'BEGIN {printf "%.*f", d, x}'; }
# ms_since T0 -> milliseconds from $EPOCHREALTIME T0 to now
ms_since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.1f", (b - a) * 1000}'; }
# timed_ms CMD...: runs CMD (output discarded), prints its wall time in ms; fails with it
# CPU time (ms, user + system) a process has used so far.
cpu_ms() { awk -v hz="$(getconf CLK_TCK)" '{printf "%d", ($14 + $15) * 1000 / hz}' "/proc/$1/stat" 2>/dev/null || echo 0; }
timed_ms() {
	local t0=$EPOCHREALTIME
	"$@" >/dev/null 2>"$T/timed.err" || { log "failed: $* ($(head -c 300 "$T/timed.err"))"; return 1; }
	ms_since "$t0"
}
left() { echo $((BUDGET - (SECONDS - START))); }
# need SECONDS: is there time left for a section that takes about that long?
need() { [ "$(left)" -ge "$1" ]; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null; }
stop_pid() { # PID [SIGNAL]: stop one process we started, wait for it (bounded)
	local p=$1
	kill -"${2:-TERM}" "$p" 2>/dev/null
	for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
	kill -9 "$p" 2>/dev/null
	wait "$p" 2>/dev/null
	return 0
}
wait_for() { # SECONDS CMD...: poll CMD every 0.1 s, bounded
	local end=$((SECONDS + $1))
	shift
	until "$@" >/dev/null 2>&1; do
		[ $SECONDS -lt $end ] || return 1
		sleep 0.1
	done
}
has_perf() { command -v perf >/dev/null && perf record -q -o /dev/null -- true >/dev/null 2>&1; }
# profile TITLE PID_OR_EMPTY CMD...: perf of CMD (and, with PID, of that server meanwhile);
# appends the top symbols (self time) to the hot spots section.
profile() {
	local title=$1 pid=$2 sp=
	shift 2
	has_perf || { echo "- $title: no usable perf here" >>"$HOT"; return 0; }
	if [ -n "$pid" ]; then
		perf record -q -F 1999 -g -p "$pid" -o "$T/srv.perf" >/dev/null 2>&1 &
		sp=$!
		sleep 0.3
	fi
	perf record -q -F 1999 -g -o "$T/cli.perf" -- "$@" >/dev/null 2>&1
	if [ -n "$sp" ]; then
		kill -INT "$sp" 2>/dev/null
		wait "$sp" 2>/dev/null
	fi
	{
		echo "- **$title** — the fleetctl process:"
		perf_top "$T/cli.perf"
		if [ -n "$sp" ]; then
			echo "  server (PID $pid) meanwhile:"
			perf_top "$T/srv.perf"
		fi
	} >>"$HOT"
}
perf_top() {
	perf report -i "$1" --no-children --stdio --percent-limit 2.5 2>/dev/null |
		grep -E '^ +[0-9.]+%' | head -8 | awk '{printf "    - %s %s\n", $1, $NF}'
}

# ---- etcd ----
log "temporary state in $T; budget ${BUDGET}s"
EP=$("$TOP/test/lib/etcd.sh" start "$ETCD_NAME" 1) || { log "etcd failed to start"; exit 1; }
EP=${EP%%,*}
ETCD_PID=$(head -n 1 "$FLEET_TEST_STATE/$ETCD_NAME.pids" 2>/dev/null)
PREFIX_BASE=/fleet-bench/$$
ETCD_VERSION=$(etcd --version 2>/dev/null | awk '/etcd Version/ {print $3}')
k() { echo "$EP/v2/keys$1"; }

on() { [[ " $SECTIONS " == *" $1 "* ]]; }

sect_etcd() {
	local out curl_ms=() i
	curl -fs -X PUT "$(k $PREFIX_BASE/ping)" -d value=pong >/dev/null
	out=$("$FB" rtt --etcd "$EP" --key "$PREFIX_BASE/ping" --n 500) || return
	result etcd_rtt "etcd GET round trip (keep-alive, fleet's client)" \
		"$(sed 's/.*median_ms=\([0-9.]*\).*/\1/' <<<"$out")" ms "" 500 "p90 $(sed 's/.*p90_ms=\([0-9.]*\).*/\1/' <<<"$out") ms"
	if out=$("$FB" rtt --etcd "$EP" --key "$PREFIX_BASE/wrtt" --n 500 --write); then
		result etcd_put_rtt "etcd PUT round trip (keep-alive, fleet's client, sequential, new key each)" \
			"$(field median_ms "$out")" ms "" 500 "p90 $(field p90_ms "$out") ms; value $(field bytes "$out") bytes (a submitted unit's {\"Raw\":...})"
	fi
	delete_prefix "$PREFIX_BASE/wrtt"
	for i in $(seq 20); do
		curl_ms+=("$(curl -fs -o /dev/null -w '%{time_total}' "$(k $PREFIX_BASE/ping)" | awk '{printf "%.3f", $1 * 1000}')")
	done
	result etcd_curl "etcd GET round trip (curl, new connection each)" "$(median "${curl_ms[@]}")" ms "" 20
	# How late etcd expires a TTL key: machine loss can never be noticed sooner. Three keys with
	# TTL 2 s at once, each watched for its expire event.
	local late=() pids=() idx
	for i in 1 2 3; do
		(
			idx=$(curl -fs -X PUT "$(k $PREFIX_BASE/ttl$i)" -d value=x -d ttl=2 | sed 's/.*"modifiedIndex":\([0-9]*\).*/\1/')
			t0=$EPOCHREALTIME
			curl -fs --max-time 10 "$(k $PREFIX_BASE/ttl$i)?wait=true&waitIndex=$((idx + 1))" >/dev/null
			awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.3f", b - a - 2}' >"$T/ttl$i"
		) &
		pids+=($!)
	done
	for p in "${pids[@]}"; do wait "$p"; done
	for i in 1 2 3; do late+=("$(cat "$T/ttl$i" 2>/dev/null)"); done
	result etcd_ttl_late "etcd: expiry of a TTL key after its TTL (lateness)" "$(median "${late[@]}")" s "" 3 \
		"runs: ${late[*]} s; bounds how soon a lost machine can be noticed"
	# Last: EP is the floors' own etcd from here on (the rows above measured the main one).
	# The floors write ~110,000 keys: on an etcd of their own (same flags, stopped after), so
	# the fleet measurements after them do not pay for it (etcd snapshots its whole v2 store
	# every 100,000 writes, which landed in the middle of the submit measurement).
	local EP
	if EP=$("$TOP/test/lib/etcd.sh" start "floor$ETCD_NAME" 1); then
		EP=${EP%%,*}
		etcd_floors
		"$TOP/test/lib/etcd.sh" stop "floor$ETCD_NAME" >/dev/null 2>&1
	else
		log "no etcd for the floors"
	fi
}

# etcd's write capacity through fleet's own client (fleet-bench write: lib/etcd.h, async on
# sd-event): the floors under the write-bound targets. Each run writes a fresh prefix, deleted
# afterwards; repetitions are interleaved across concurrencies so a burst of outside load does
# not land on one of them only. FLOOR_SUBMIT / FLOOR_PLACE ("K=seconds ...") feed the Notes of
# the submit and placement rows.
FLOOR_SUBMIT='' FLOOR_PLACE=''
declare -A FR=() FR_LINE=()
# floor_runs WORKLOAD UNITS REPS K...: FR[K] = seconds of each run, FR_LINE[K] = last output
floor_runs() {
	local wl=$1 units=$2 reps=$3 r p out pre
	shift 3
	for p in "$@"; do FR[$p]='' FR_LINE[$p]=''; done
	for r in $(seq "$reps"); do
		for p in "$@"; do
			pre=$PREFIX_BASE/floor-$wl-$p-$r/
			if out=$("$FB" write --etcd "$EP" --prefix "$pre" --workload "$wl" --units "$units" --parallel "$p"); then
				FR[$p]="${FR[$p]} $(field seconds "$out")"
				FR_LINE[$p]=$out
			else
				log "fleet-bench write $wl at $p: ${out:-failed}"
			fi
			delete_prefix "$pre"
		done
	done
}
floor_note() { # OUTPUT-LINE MEDIAN RUNS...: the Notes of a floor row
	local line=$1 m=$2
	shift 2
	echo "$(awk -v n="$(field requests "$line")" -v m="$m" 'BEGIN {printf "%.0f", n / m}') requests/s; runs: $* s; last run: per request median $(field lat_median_ms "$line") ms, p90 $(field lat_p90_ms "$line") ms, fleet-bench CPU $(field client_cpu_ms "$line") ms"
}
etcd_floors() {
	local p v runs line sreps=$ETCD_REPS preps=$(((ETCD_REPS + 1) / 2)) out load
	floor_runs submit 1000 "$sreps" 1 16 32 64
	for p in 1 16 32 64; do
		read -ra runs <<<"${FR[$p]}"
		line=${FR_LINE[$p]}
		[ ${#runs[@]} -gt 0 ] || { skip "etcd_floor_submit_$p" "etcd floor: submit's writes, $p in flight" "fleet-bench write failed"; continue; }
		v=$(fmt "$(median "${runs[@]}")" 3)
		FLOOR_SUBMIT="$FLOOR_SUBMIT $p=$v"
		result "etcd_floor_submit_$p" "etcd floor for submit of 1,000 units (target <= 0.5 s): its 3,000 PUTs, $p in flight" \
			"$v" s "" ${#runs[@]} "$(floor_note "$line" "$v" "${runs[@]}")"
	done
	# create_unit's fourth request (the quorum GET of the object) on top, at 32 in flight.
	if out=$("$FB" write --etcd "$EP" --prefix "$PREFIX_BASE/floor-check/" --workload submit-check --units 1000 --parallel 32); then
		result etcd_floor_submit_check_32 "etcd floor for submit of 1,000 units with create_unit's quorum GET (4,000 requests), 32 in flight" \
			"$(fmt "$(field seconds "$out")" 3)" s "" 1 "$(floor_note "$out" "$(field seconds "$out")" "$(field seconds "$out")")"
	fi
	delete_prefix "$PREFIX_BASE/floor-check/"
	floor_runs place 10000 "$preps" 16 32 64
	for p in 16 32 64; do
		read -ra runs <<<"${FR[$p]}"
		line=${FR_LINE[$p]}
		[ ${#runs[@]} -gt 0 ] || { skip "etcd_floor_place_$p" "etcd floor: placement's creates, $p in flight" "fleet-bench write failed"; continue; }
		v=$(fmt "$(median "${runs[@]}")" 2)
		FLOOR_PLACE="$FLOOR_PLACE $p=$v"
		result "etcd_floor_place_$p" "etcd floor for 10,000 units placed (target <= 10 s): 10,000 create-only PUTs of \`job/<unit>/target\`, $p in flight" \
			"$v" s "" ${#runs[@]} "$(floor_note "$line" "$v" "${runs[@]}")"
	done
	# The agents' heartbeats: refreshes of unchanged TTL keys (ttl_key_step), 2,000 keys.
	if out=$("$FB" write --etcd "$EP" --prefix "$PREFIX_BASE/floor-refresh/" --workload refresh --units 2000 --n 10000 --parallel 32); then
		# 10,000 units on 1,000 machines: 3 TTL keys per unit (job-state, states/, legacy state/)
		# every agent_ttl*4/5, and every machine's beat every agent_ttl/2.
		load=$(awk -v t="$TTL" 'BEGIN {printf "%.0f", 3 * 10000 / (t * 0.8) + 1000 / (t / 2)}')
		result etcd_refresh_32 "etcd TTL refresh throughput (ttl, refresh=true, prevExist=true, prevValue), 32 in flight" \
			"$(field per_s "$out")" "refreshes/s" "" 1 \
			"10,000 refreshes over 2,000 keys in $(field seconds "$out") s; per request median $(field lat_median_ms "$out") ms, p90 $(field lat_p90_ms "$out") ms; simulated agents at 10,000 units / 1,000 machines, agent_ttl ${TTL} s: ~$load writes/s = $(awk -v l="$load" -v c="$(field per_s "$out")" 'BEGIN {printf "%.0f", 100 * l / c}')% of this"
	fi
	delete_prefix "$PREFIX_BASE/floor-refresh/"
}

sect_binary() {
	local s
	strip -o "$T/fleet.stripped" "$FLEET" 2>/dev/null || { skip binary "binary size (stripped)" "strip failed"; return; }
	s=$(stat -c %s "$T/fleet.stripped")
	result binary "fleet binary, static, stripped" "$(fmt "$(awk -v s="$s" 'BEGIN {print s / 1048576}')" 2)" MiB "<= 3" 1 "$s bytes"
}

# ---- fleetd ----

SD_WHY=
if [ -f "$TOP/test/lib/systemd.sh" ]; then
	# shellcheck source=lib/systemd.sh
	. "$TOP/test/lib/systemd.sh"
else
	sd_start() { SD_WHY="test/lib/systemd.sh missing"; return 1; }
	sd_stop() { :; }
fi
ensure_systemd() {
	[ -n "$SD_STARTED" ] && return 0
	[ -n "$SD_WHY" ] && return 1
	if sd_start "bench$$"; then
		SD_STARTED=1
		return 0
	fi
	SD_WHY=${SD_WHY:-unknown}
	return 1
}

DAEMON_PID= DAEMON_SOCK= DAEMON_KIND=
# start_daemon NAME PREFIX: fleetd (or, without a systemd manager, `fleet scheduler`: engine +
# API, no agent) with its API on a private unix socket; waits until the API answers.
start_daemon() {
	local name=$1 prefix=$2 applet=daemon
	DAEMON_SOCK=$T/$name.sock
	mkdir -p "$T/$name.units"
	od -An -tx1 -N16 /dev/urandom | tr -d ' \n' >"$T/$name.machine-id"
	{
		echo "etcd_servers=$EP"
		echo "etcd_key_prefix=$prefix"
		echo "agent_ttl=${TTL}s"
		echo "public_ip=10.9.9.9"
		echo "api_listen=unix:$DAEMON_SOCK"
		echo "units_directory=$T/$name.units/"
		echo "systemd_user=true"
		# The list section's units are scheduled by `fleet-bench populate` itself, onto its
		# simulated machines: an engine here would race it and place some on this daemon.
		[ "$name" = list ] && echo "disable_engine=true"
	} >"$T/$name.conf"
	if ensure_systemd; then
		DAEMON_KIND="fleetd (agent on systemd --user, engine, API)"
	else
		applet=scheduler
		DAEMON_KIND="fleet scheduler (engine + API; no systemd manager here: $SD_WHY)"
	fi
	[ "$name" = list ] && DAEMON_KIND="${DAEMON_KIND/engine, /engine disabled, }"
	rm -f "$DAEMON_SOCK"
	FLEET_MACHINE_ID_FILE=$T/$name.machine-id "$FLEET" "$applet" -config "$T/$name.conf" \
		>"$T/$name.log" 2>&1 </dev/null &
	DAEMON_PID=$!
	PIDS+=("$DAEMON_PID")
	wait_for 30 curl -fs --unix-socket "$DAEMON_SOCK" http://fleet/fleet/v1/machines || {
		log "$name: API never answered"; tail -5 "$T/$name.log" >&2; return 1; }
}
mirror_reads() { curl -fs --unix-socket "$DAEMON_SOCK" http://fleet/metrics | awk '/^fleet_registry_mirror_reads_total/ {print $2}'; }
ctl_api() { "$FLEET" ctl --endpoint "unix://$DAEMON_SOCK" "$@"; }
ctl_etcd() { "$FLEET" ctl --driver etcd --endpoint "$EP" --etcd-key-prefix "$1" "${@:2}"; }
count_units() { [ "$(ctl_api list-unit-files --no-legend 2>/dev/null | wc -l)" -ge "$1" ]; }
count_states() { [ "$(ctl_api list-units --no-legend 2>/dev/null | wc -l)" -ge "$1" ]; }

sect_submit() {
	local prefix=$PREFIX_BASE/submit/ r i d ms=() one=() total=() rss ecpu=() fcpu=() reads0 floor=() out fp
	start_daemon submit "$prefix" || { skip submit_1000 "submit" "daemon did not start"; return; }
	sleep 5
	rss=$(rss_kb "$DAEMON_PID")
	result rss_idle "daemon RSS, idle (empty registry)" "$(fmt "$(awk -v k="$rss" 'BEGIN {print k / 1024}')" 2)" MiB "<= 4" 1 "$DAEMON_KIND"
	reads0=$(mirror_reads)
	for r in $(seq "$SUBMIT_REPS"); do
		d=$T/submit-$r
		mkdir -p "$d"
		for i in $(seq -w 1 1000); do
			printf '[Unit]\nDescription=bench submit %s-%s\n\n[Service]\nExecStart=/bin/sleep infinity\n' "$r" "$i" \
				>"$d/sub$r-$i.service"
		done
		# etcd's own floor for the same writes just before, on the same etcd: the box's speed
		# moves both alike, so their ratio is what fleet adds. With the one recursive watch
		# stream every daemon holds (etcd encodes and flushes each event to it), the run ends
		# when every write has come back as an event, as the daemon's mirror must see them.
		# Not within 0.5 s after a submit: the daemon then restarts its stream from the last
		# index it saw, and 3,000 writes elsewhere by then push that out of etcd's 1,000-event
		# history (a full re-read, counted below, that the submit itself did not cause).
		fp=$PREFIX_BASE/floor-submit-watch-$r/
		if out=$("$FB" write --etcd "$EP" --prefix "$fp" --workload submit --units 1000 --parallel 16 --watch); then
			floor+=("$(awk -v s="$(field seconds "$out")" 'BEGIN {printf "%.0f", s * 1000}')")
		else
			log "fleet-bench write --watch: ${out:-failed}"
		fi
		delete_prefix "$fp"
		local e0 f0
		e0=$(cpu_ms "$ETCD_PID") f0=$(cpu_ms "$DAEMON_PID")
		ms+=("$(timed_ms ctl_api submit "$d"/*.service)") || break
		ecpu+=($(($(cpu_ms "$ETCD_PID") - e0))) fcpu+=($(($(cpu_ms "$DAEMON_PID") - f0)))
		sleep 1 # past that restart, before the next floor writes
	done
	result submit_1000 "fleetctl submit of 1,000 units in one call (API)" "$(median "${ms[@]}")" ms "<= 500" ${#ms[@]} \
		"registry of 0..$((1000 * (SUBMIT_REPS - 1))) units; runs: ${ms[*]} ms; CPU meanwhile: etcd $(median "${ecpu[@]}") ms, fleetd $(median "${fcpu[@]}") ms (2 cores); full re-reads by the daemon's mirror: $(($(mirror_reads) - reads0))"
	if [ ${#floor[@]} -gt 0 ]; then
		result etcd_floor_submit_watch "etcd floor beside each submit run: the same 3,000 PUTs (16 units in flight, as fleetctl) with one watch stream, until all came back as events" \
			"$(median "${floor[@]}")" ms "" ${#floor[@]} \
			"runs: ${floor[*]} ms, each just before the submit run above (fleet's client, fleet-bench write --watch); submit / floor: $(awk -v a="$(median "${ms[@]}")" -v b="$(median "${floor[@]}")" 'BEGIN {printf "%.2f", a / b}')"
	fi
	if [ ${#ms[@]} -gt 0 ] && [ "$(awk -v m="$(median "${ms[@]}")" 'BEGIN {print (m > 500)}')" = 1 ]; then
		d=$T/submit-prof
		mkdir -p "$d"
		for i in $(seq -w 1 300); do
			printf '[Unit]\nDescription=bench submit prof %s\n\n[Service]\nExecStart=/bin/sleep infinity\n' "$i" >"$d/prof-$i.service"
		done
		profile "submit of 300 units (API)" "$DAEMON_PID" "$FLEET" ctl --endpoint "unix://$DAEMON_SOCK" submit "$d"/*.service
	fi
	for r in $(seq "$SLOW_REPS"); do
		local t0=$EPOCHREALTIME
		for i in $(seq -w 1 100); do
			printf '[Unit]\nDescription=single %s-%s\n\n[Service]\nExecStart=/bin/sleep infinity\n' "$r" "$i" >"$T/single$r-$i.service"
			one+=("$(timed_ms ctl_api submit "$T/single$r-$i.service")")
		done
		total+=("$(ms_since "$t0")")
	done
	result submit_100 "100 single fleetctl submit calls (API), total" "$(median "${total[@]}")" ms "" ${#total[@]} \
		"median per call $(median "${one[@]}") ms"
	stop_pid "$DAEMON_PID"
}

LIST_SIZES=(100 1000 10000)
sect_list() {
	local prefix=$PREFIX_BASE/list/ n have=0 w what drv out cmd t v raw=() dec i
	start_daemon list "$prefix" || { skip list "list" "daemon did not start"; return; }
	for n in "${LIST_SIZES[@]}"; do
		need 90 || { skip "list_$n" "list with $n units" "time budget spent"; continue; }
		out=$("$FB" populate --etcd "$EP" --prefix "$prefix" --units $((n - have)) --start "$have" \
			--machines 100 --id-prefix fa4e --schedule --ttl 3600 --parallel 8) || { log "populate failed: $out"; return; }
		log "$out"
		have=$n
		wait_for 120 count_states "$n" || { skip "list_$n" "list with $n units" "API never showed $n unit states"; continue; }
		# Settled: a mirror whose stream etcd dropped during the burst restarts it 2 s after
		# the last event and may re-read everything; measure after that, not in the middle.
		sleep 6
		result "rss_$n" "daemon RSS, $n units known" \
			"$(fmt "$(awk -v k="$(rss_kb "$DAEMON_PID")" 'BEGIN {print k / 1024}')" 2)" MiB \
			"$([ "$n" = 10000 ] && echo "<= 16")" 1 "$DAEMON_KIND; full reads of the registry so far: $(curl -fs --unix-socket "$DAEMON_SOCK" http://fleet/metrics | awk '/^fleet_registry_mirror_reads_total/ {print $2}'); peak (VmHWM) $(awk '/^VmHWM:/ {printf "%.1f", $2 / 1024}' "/proc/$DAEMON_PID/status") MiB"
		for what in list-unit-files list-units; do
			for drv in api etcd; do
				local samples=()
				if [ $drv = api ]; then cmd=(ctl_api "$what"); else cmd=(ctl_etcd "$prefix" "$what"); fi
				"${cmd[@]}" >/dev/null 2>&1 # warm-up
				for _ in $(seq "$REPS"); do samples+=("$(timed_ms "${cmd[@]}")"); done
				t=""
				if [ $what = list-unit-files ] && [ $drv = api ]; then
					[ "$n" = 1000 ] && t="<= 30"
					[ "$n" = 10000 ] && t="<= 200"
				fi
				v=$(median "${samples[@]}")
				result "${what}_${drv}_$n" "fleetctl $what, $n units, $drv driver" "$v" ms "$t" ${#samples[@]}
				if [ -n "$t" ] && [ "$(awk -v v="$v" -v t="${t#<= }" 'BEGIN {print (v > t)}')" = 1 ]; then
					if [ $drv = api ]; then
						profile "fleetctl $what, $n units, API driver ($v ms)" "$DAEMON_PID" \
							"$FLEET" ctl --endpoint "unix://$DAEMON_SOCK" "$what"
					else
						profile "fleetctl $what, $n units, etcd driver ($v ms)" "" \
							"$FLEET" ctl --driver etcd --endpoint "$EP" --etcd-key-prefix "$prefix" "$what"
					fi
				fi
			done
		done
		# A command naming a few units costs the same in a registry of any size: fleetctl asks
		# for them (and their templates) with GETs at once, not with a list of everything.
		local few=()
		for i in $(seq "$REPS"); do
			printf '[Unit]\nDescription=few %s\n\n[Service]\nExecStart=/bin/sleep infinity\n' "$i" >"$T/few-a.service"
			cp "$T/few-a.service" "$T/few-b.service"
			few+=("$(timed_ms ctl_api submit "$T/few-a.service" "$T/few-b.service")")
			ctl_api destroy few-a.service few-b.service >/dev/null 2>&1
		done
		result "submit_2_$n" "fleetctl submit of 2 units into a registry of $n (API)" "$(median "${few[@]}")" ms "" ${#few[@]}
		raw=()
		for _ in $(seq "$REPS"); do
			raw+=("$(curl -fs -o /dev/null -w '%{time_total}' "$(k "$prefix")?recursive=true&sorted=true" | awk '{printf "%.1f", $1 * 1000}')")
		done
		result "etcd_read_$n" "etcd: one recursive GET of the registry, $n units (curl)" "$(median "${raw[@]}")" ms "" ${#raw[@]} \
			"$(curl -fs "$(k "$prefix")?recursive=true" | wc -c) bytes"
		dec=$("$FB" decode --etcd "$EP" --prefix "$prefix") || dec=
		if [ -n "$dec" ]; then
			result "snapshot_$n" "registry mirror: one change applied (CPU), $n units" \
				"$(sed 's/.*event_us=\([0-9.]*\).*/\1/' <<<"$dec")" us "" 2000 \
				"what every daemon does per etcd event (incremental store); a full load $(sed 's/.*load_ms=\([0-9.]*\).*/\1/' <<<"$dec") ms; a full decode (the old per-change cost) $(sed 's/.*full_ms=\([0-9.]*\).*/\1/' <<<"$dec") ms; $(cut -d' ' -f2-5 <<<"$dec")"
		fi
	done
	stop_pid "$DAEMON_PID"
}

# ---- simulated clusters ----

SIM_PID= SIM_OUT=
# start_sim PREFIX MACHINES IDPREFIX [SIM OPTIONS...]
start_sim() {
	SIM_OUT=$T/sim-$3.out
	SIM_MARK=0
	rm -f "$T/sim.cmd" "$SIM_OUT"
	mkfifo "$T/sim.cmd"
	exec 7<>"$T/sim.cmd"
	"$FB" sim --etcd "$EP" --prefix "$1" --machines "$2" --id-prefix "$3" --ttl "$TTL" "${@:4}" \
		<&7 >"$SIM_OUT" 2>"$T/sim-$3.log" &
	SIM_PID=$!
	PIDS+=("$SIM_PID")
	wait_for 120 grep -q '^registered' "$SIM_OUT" || { log "simulated machines did not register"; return 1; }
}
sim_cmd() { echo "$*" >&7; }
# sim_mark: events from here on only (call before the command that causes them)
SIM_MARK=0
sim_mark() { SIM_MARK=$(wc -l <"$SIM_OUT"); }
# sim_event REGEX SECONDS: waits for the first line after the mark matching REGEX, prints it
sim_event() {
	local end=$((SECONDS + $2)) line
	while :; do
		line=$(tail -n +$((SIM_MARK + 1)) "$SIM_OUT" | grep -E "$1" | head -1)
		[ -n "$line" ] && { echo "$line"; return 0; }
		[ $SECONDS -lt $end ] || return 1
		sleep 0.1
	done
}
stop_sim() {
	[ -n "$SIM_PID" ] && stop_pid "$SIM_PID"
	SIM_PID=
	exec 7>&-
}
field() { sed -n "s/.*[ ^]$1=\([^ ]*\).*/\1/p" <<<" $2"; } # NAME LINE -> value of NAME=...

SCHED_PID= SCHED_SOCK=
start_sched() { # NAME PREFIX -> sets SCHED_PID; records the start time in SCHED_T0
	SCHED_SOCK=$T/$1.sock
	od -An -tx1 -N16 /dev/urandom | tr -d ' \n' >"$T/$1.machine-id"
	printf 'etcd_servers=%s\netcd_key_prefix=%s\napi_listen=unix:%s\nagent_ttl=%ss\n' "$EP" "$2" "$SCHED_SOCK" "$TTL" >"$T/$1.conf"
	rm -f "$SCHED_SOCK"
	SCHED_T0=$EPOCHREALTIME
	# Log lines get a time stamp (the engine's own reaction to a machine loss is read from them).
	FLEET_MACHINE_ID_FILE=$T/$1.machine-id "$FLEET" scheduler -config "$T/$1.conf" \
		> >(perl -MTime::HiRes=time -ne '$|=1; printf "%.3f %s", time, $_' >"$T/$1.log") 2>&1 </dev/null &
	SCHED_PID=$!
	SCHED_LOG=$T/$1.log
	PIDS+=("$SCHED_PID")
}
metric() { curl -fs --unix-socket "$SCHED_SOCK" http://fleet/metrics | awk -v m="$1" '$1 == m {print $2}'; }
delete_prefix() { curl -fs -X DELETE "$(k "$1")?recursive=true" >/dev/null 2>&1; }

# place RUN UNITS MACHINES IDPREFIX [SIM OPTIONS...] -> sets PLACE_MS; leaves sim and scheduler
# running
place() {
	local run=$1 units=$2 machines=$3 idp=$4 prefix=$PREFIX_BASE/place-$1/ out ev
	PLACE_MS= PLACE_PREFIX=$prefix
	out=$("$FB" populate --etcd "$EP" --prefix "$prefix" --units "$units" --parallel 8) || { log "populate failed"; return 1; }
	log "$out"
	start_sim "$prefix" "$machines" "$idp" "${@:5}" || return 1
	sim_mark
	sim_cmd "expect $units"
	start_sched "sched-$run" "$prefix"
	ev=$(sim_event '^placed' 240) || { log "not all $units units placed within 240 s"; tail -3 "$T/sched-$run.log" >&2; return 1; }
	PLACE_MS=$(awk -v a="$SCHED_T0" -v b="$(field t "$ev")" 'BEGIN {printf "%.0f", (b - a) * 1000}')
	log "run $run: $units units on $machines machines placed in $PLACE_MS ms ($(grep -c 'lease expired' "$T/sched-$run.log") lease losses)"
}
end_place() {
	[ -n "$SCHED_PID" ] && stop_pid "$SCHED_PID"
	SCHED_PID=
	stop_sim
	delete_prefix "$PLACE_PREFIX"
}

# reconcile_cost: engine requests/bytes over a window, idle and after one change (run in the
# presence-only cluster: no unit state writes, so the engine's watch sees only its own lease)
reconcile_cost() {
	local w=10 r0 b0 r1 b1 r2 b2 per interval=2 unit=bench-00042.service
	sleep 5
	r0=$(metric fleet_registry_operation_count_total) b0=$(metric fleet_registry_received_bytes_total)
	b0=$((b0 + $(metric fleet_registry_sent_bytes_total)))
	sleep $w
	r1=$(metric fleet_registry_operation_count_total) b1=$(metric fleet_registry_received_bytes_total)
	b1=$((b1 + $(metric fleet_registry_sent_bytes_total)))
	per=$((w / interval))
	result reconcile_idle "engine etcd requests per reconcile, nothing changed (10,000 units, 1,000 machines)" \
		"$(fmt "$(awk -v a="$r0" -v b="$r1" -v p="$per" 'BEGIN {print (b - a) / p}')" 1)" requests "O(1)" "$per" \
		"$(fmt "$(awk -v a="$b0" -v b="$b1" -v p="$per" 'BEGIN {print (b - a) / p}')" 0) bytes per reconcile (engine's /metrics: lease renewal + watch); interval ${interval} s, ${w} s window"
	curl -fs -X PUT "$(k "$PLACE_PREFIX")job/$unit/target-state" -d value=loaded >/dev/null
	sleep $w
	r2=$(metric fleet_registry_operation_count_total) b2=$(metric fleet_registry_received_bytes_total)
	b2=$((b2 + $(metric fleet_registry_sent_bytes_total)))
	result reconcile_one "engine etcd requests, ${w} s window with one unit changed (same cluster)" \
		"$((r2 - r1))" requests "" 1 \
		"vs $((r1 - r0)) in the idle window; $((b2 - b1)) bytes vs $((b1 - b0)); the change: target-state launched->loaded (fleetctl stop)"
}

sect_engine() {
	local run ms=() e=
	for run in $(seq "$SLOW_REPS"); do
		need 260 || { log "engine: time budget spent after $((run - 1)) runs"; break; }
		place "e$run" 10000 1000 "5173$run" && ms+=("$PLACE_MS")
		end_place
	done
	if [ ${#ms[@]} -eq 0 ]; then
		skip place_1000 "10,000 units placed on 1,000 machines, cold start" "no run completed"
	else
		result place_1000 "10,000 units placed on 1,000 machines, cold start (agents publishing)" \
			"$(fmt "$(awk -v m="$(median "${ms[@]}")" 'BEGIN {print m / 1000}')" 2)" s "<= 10" ${#ms[@]} \
			"scheduler start to every target seen by the agents; runs: ${ms[*]} ms"
	fi
	# The engine alone: machines heartbeat but publish nothing about units.
	need 120 || { skip place_1000_quiet "10,000 units on 1,000 machines, engine alone" "time budget spent"; return; }
	if place q 10000 1000 51739 --presence-only; then
		result place_1000_quiet "10,000 units placed on 1,000 machines, cold start (machines only heartbeat)" \
			"$(fmt "$(awk -v m="$PLACE_MS" 'BEGIN {print m / 1000}')" 2)" s "" 1 "isolates the engine from the agents' etcd load"
		reconcile_cost
	fi
	end_place
}

sect_failover() {
	local i ev busy id units tk eng dts=() exp=() ns=() noticed=() done_=() expiry=()
	need 200 || { skip failover "machine loss" "time budget spent"; return; }
	if ! place f 10000 200 5174; then
		end_place
		skip failover "machine loss" "placement failed"
		return
	fi
	result place_200 "10,000 units placed on 200 machines, cold start" "$(fmt "$(awk -v m="$PLACE_MS" 'BEGIN {print m / 1000}')" 2)" s "" 1
	# The engine holds back for one agent_ttl after taking the lease (machines re-registering).
	while [ "$(awk -v a="$SCHED_T0" -v b="$EPOCHREALTIME" -v t="$TTL" 'BEGIN {print (b - a < t + 3)}')" = 1 ]; do sleep 1; done
	for i in $(seq "$FAIL_REPS"); do
		need $((TTL + 30)) || break
		sim_mark
		sim_cmd busiest
		ev=$(sim_event '^busiest' 5) || break
		busy=$(awk '{print $2}' <<<"$ev")
		units=$(field units "$ev")
		id=$(printf '%s%0*x' 5174 28 "$busy")
		sim_mark
		sim_cmd "kill $busy"
		ev=$(sim_event "^killed $id " 10) || break
		tk=$(field t "$ev")
		# etcd's own view: a watch on that one key sees the expiry as it happens (the mirrors,
		# watching the whole prefix one event per round trip, may see it later).
		rm -f "$T/expired"
		(curl -fs --max-time $((TTL + 30)) "$(k "$PLACE_PREFIX")machines/$id/object?wait=true" >/dev/null
			echo "$EPOCHREALTIME" >"$T/expired") &
		PIDS+=($!)
		ev=$(sim_event "^replaced $id" $((TTL + 60))) || { log "units of $id not replaced within $((TTL + 60)) s"; break; }
		[ -s "$T/expired" ] && expiry+=("$(awk -v a="$tk" -v b="$(cat "$T/expired")" 'BEGIN {printf "%.3f", b - a}')")
		dts+=("$(field dt "$ev")")
		exp+=("$(field after_expiry "$ev")")
		ns+=("$(field units "$ev")")
		# The engine's side, from its log: first unschedule (it noticed) and last schedule.
		sleep 1
		eng=$(awk -v t="$tk" -v m="Machine($id)" '$1 > t && /Unscheduled Job/ && index($0, m) { if (!f) f = $1 }
			$1 > t && /Scheduled Unit/ { l = $1 } END { if (f && l) printf "%.3f %.3f", f - t, l - t }' "$SCHED_LOG")
		if [ -n "$eng" ]; then
			noticed+=("${eng% *}")
			done_+=("${eng#* }")
		fi
		log "machine $id ($units units) lost: agents saw all re-placed after $(field dt "$ev") s ($(field after_expiry "$ev") s after the key expired); engine: noticed ${eng% *} s, last schedule ${eng#* } s after the last heartbeat"
	done
	if [ ${#dts[@]} -gt 0 ]; then
		result failover "machine with ${ns[0]} units lost: all re-placed (last heartbeat to agents seeing it)" "$(median "${dts[@]}")" s "<= $((TTL + 2))" ${#dts[@]} \
			"runs: ${dts[*]} s; units per machine: ${ns[*]}; the agents saw the key expire $(median "${exp[@]}") s before"
		if [ ${#expiry[@]} -gt 0 ]; then
			result failover_expiry "machine lost: etcd expires its key (from its last heartbeat; a watch on that key)" "$(median "${expiry[@]}")" s "" ${#expiry[@]} \
				"agent_ttl ${TTL} s; runs: ${expiry[*]} s"
		fi
		if [ ${#done_[@]} -gt 0 ]; then
			result failover_engine "machine lost: engine's last schedule (from its last heartbeat)" "$(median "${done_[@]}")" s "<= $((TTL + 2))" ${#done_[@]} \
				"engine noticed (first unschedule) after $(median "${noticed[@]}") s; runs: ${done_[*]} s"
		fi
	else
		skip failover "machine loss" "no loss measured"
	fi
	end_place
}

# ---- nspawn cluster ----
sect_cluster() {
	local why
	need 120 || { skip cluster "start --no-block to running (nspawn)" "time budget spent"; return; }
	# cluster.sh sets traps and state of its own: run it in a child.
	FLEET_BUILD=$FLEET_BUILD BENCH_T=$T BENCH_REPS=$REPS bash -c '
		. "$0/test/cluster/cluster.sh"
		# Through the multicall binary: a build directory need not have the fleetctl symlink.
		cl_ctl() { local n=$1; shift; "$CL_BUILD/fleet" ctl --endpoint "http://$(cl_ip "$n"):54728" "$@"; }
		why=$(cl_why_not)
		[ -z "$why" ] || { echo "SKIP $why"; exit 0; }
		# Another cluster (a test run) holds the machine-global names: do not queue behind it.
		if ! (flock -w 60 9) 9>/run/fleet-cluster.lock; then echo "SKIP another cluster run holds /run/fleet-cluster.lock"; exit 0; fi
		cl_init >"$BENCH_T/clinit.log" 2>&1 || { echo "SKIP cluster setup failed: $(tail -1 "$BENCH_T/clinit.log")"; exit 0; }
		cl_boot 1 >"$BENCH_T/clboot.log" 2>&1 || { echo "SKIP node 1 did not boot: $(tail -1 "$BENCH_T/clboot.log")"; exit 0; }
		cl_wait 30 eval "[ \"\$(cl_ctl 1 list-machines --no-legend | wc -l)\" = 1 ]" || { echo "SKIP fleet on node 1 never listed its machine"; exit 0; }
		init=$(cl_init_pid 1)
		for i in $(seq "$BENCH_REPS"); do
			u=$BENCH_T/benchstart$i.service
			printf "[Service]\nExecStart=/bin/sh -c \"date +%%%%s.%%%%N >/run/benchstart$i; exec sleep 1000\"\n" >"$u"
			t0=$EPOCHREALTIME
			cl_ctl 1 start --no-block "$u" >/dev/null 2>&1 || { echo "FAIL start $i"; continue; }
			f=/proc/$init/root/run/benchstart$i
			for _ in $(seq 1500); do [ -s "$f" ] && break; sleep 0.02; done
			[ -s "$f" ] || { echo "FAIL unit $i never ran"; continue; }
			echo "RUN $(awk -v a="$t0" -v b="$(cat "$f")" "BEGIN {printf \"%.1f\", (b - a) * 1000}")"
		done
		cl_kill 1 >&2
	' "$TOP" >"$T/cluster.out" 2>"$T/cluster.log"
	why=$(sed -n 's/^SKIP //p' "$T/cluster.out" | head -1)
	if [ -n "$why" ]; then
		skip cluster "fleetctl start --no-block to unit running (nspawn, real systemd)" "$why"
		return
	fi
	mapfile -t runs < <(sed -n 's/^RUN //p' "$T/cluster.out")
	if [ ${#runs[@]} -eq 0 ]; then
		skip cluster "fleetctl start --no-block to unit running (nspawn, real systemd)" "no run succeeded: $(head -1 "$T/cluster.out")"
		return
	fi
	result cluster_start "fleetctl start --no-block to unit running (nspawn node, real systemd)" "$(median "${runs[@]}")" ms "" ${#runs[@]} \
		"1 node, engine_reconcile_interval 1 s; runs: ${runs[*]} ms"
}

# ---- run ----
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
for s in $SECTIONS; do
	case $s in
	etcd | binary | submit | list | engine | failover | cluster) log "== $s"; "sect_$s" ;;
	*) log "unknown section $s" ;;
	esac
done
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- report ----

# The etcd floors in the Notes of the rows they bound (a reader sees the ratio to etcd directly).
# Submit: the floor at 1 unit in flight (sequential) and the best; placement: at 16 in flight
# (the engine's ENGINE_MAX_IN_FLIGHT) and the best.
floor_text() { # "K=s ..." WHO-K WHO -> "etcd floor X s at K in flight (WHO), best Y s at K'"
	awk -v l="$1" -v k="$2" -v who="$3" 'BEGIN {
		n = split(l, a, " "); best = ""; own = ""
		for (i = 1; i <= n; i++) {
			split(a[i], f, "="); if (f[1] == k) own = f[2]
			if (best == "" || f[2] + 0 < bv) { best = f[1]; bv = f[2] + 0; bs = f[2] }
		}
		s = ""
		if (own != "") s = "etcd floor " own " s at " k " in flight (" who ")"
		if (best != "" && best != k) s = s (s == "" ? "etcd floor " : ", best ") bs " s at " best " in flight"
		print s
	}'
}
if [ -n "$FLOOR_SUBMIT$FLOOR_PLACE" ]; then
	fs=$(floor_text "$FLOOR_SUBMIT" 1 "sequential")
	fp=$(floor_text "$FLOOR_PLACE" 16 "the engine's")
	awk -F'\t' -v OFS='\t' -v fs="$fs" -v fp="$fp" '{
		f = ""
		if ($1 == "submit_1000") f = fs
		else if ($1 == "place_1000" || $1 == "place_1000_quiet" || $1 == "place_200") f = fp
		if (f != "" && $3 != "skipped") $7 = ($7 == "" ? f : $7 "; " f)
		print
	}' "$RES" >"$RES.new" && mv "$RES.new" "$RES"
fi

# Why a target is missed: the causes found by profiling (perf, callgrind, massif) when the suite
# was written, printed for the targets this run missed. The measured rows they cite are above.
why_missed() {
	case $1 in
	submit_1000) cat <<-'EOF'
		- **submit of 1,000 units**: etcd and fleetd share the two cores. fleetctl lists the
		  registry's unit names once, validates every file, then sends 16 PUTs at a time; the daemon decides
		  each from its mirror (decoded per event, no rebuild) and writes the unit with 3 etcd
		  requests (unit/<hash>, target-state, object; an inactive unit needs no read-back):
		  1,000 units are 3,000 etcd writes, and 3,000 events etcd encodes and flushes to the
		  daemon's watch stream. The row "etcd floor beside each submit run" is etcd doing exactly
		  that for fleet's own client alone on the box, measured just before each submit: the
		  submit / floor ratio is what fleet adds (~1.2-1.3: etcd's CPU is about the same either
		  way, but fleetd adds its own, ~190-220 ms against ~120-130 ms for the bare client (~250
		  before etcd's replies and events were decoded without cJSON and the hot paths stopped
		  using printf: 398 M instructions per submit to 266 M): the HTTP and
		  JSON of the PUT, of 3 write replies and of 3 events, ~20 syscalls per unit (10 of them
		  epoll_wait: sd-event polls once per dispatched source; starting a request on a kept
		  connection at once instead of from the loop cut those by a third and changed nothing
		  measurable: 16 interleaved A/B pairs, medians 502 and 502 ms), no hot spot; then
		  fleetctl's start, reading and validating 1,000 files; the runs are on 0..6,000
		  units and cost alike since the existence check lists names only and the engine plans
		  nothing for units added inactive). Tried without gain:
		  a unit's 3 writes pipelined on one connection (a test client against etcd) or 2 of them
		  in parallel (a fleetd build): etcd's throughput stays the same, CPU is the limit, not round
		  trips; 8, 24 or 32 PUTs in flight (32 again once etcd's client kept 64 idle
		  connections instead of reconnecting beyond 16: three full benches pooled to 453 ms,
		  but the floor is the same at 16 and 32 and etcd dropped the watch stream in 3 of 36
		  floor runs at 32, none of 36 at 16, so fleetctl stays at 16).
		  GETs instead of the existence list (~65 ms for 1,000 names at any registry size).
		  fleetctl's own start is 12-35 ms of each run (the names list 1-11 ms, growing with the
		  registry, then reading the files), the rest is the PUTs.
		  The box itself moves the figure: over two days the same code gave full-bench medians
		  from 460 to 630 ms, and etcd's floor beside them from 362 to 491 ms; the six benches
		  of one day pooled their 42 runs to 509 ms. The cheaper decoding took 6-8% off in
		  interleaved pairs (20 each: 492 -> 454 ms); its three benches: 464.6, 436.1, 441.4 ms.
		EOF
		;;
	rss_10000) cat <<-'EOF'
		- **daemon memory with 10,000 units**: the mirror (lib/registry-store.c) keeps ~1 KiB per
		  unit decoded (job record, unit state, unit file in one block, snapshot entries; see
		  test-registry-store's "heap per unit" lines). RSS above that is heap the allocator keeps:
		  a full read is flattened and freed before the store is built so the store packs, but
		  events arriving while a burst of writes lands still leave some holes.
		EOF
		;;
	list-unit-files_api_1000 | list-unit-files_api_10000) cat <<-'EOF'
		- **list-unit-files through the API**: fleet's paging (token_limit 100, as fleet) makes
		  10,000 units 100 page requests; the daemon encodes each page from its always-current
		  snapshot (no rebuild), and most of the time is fleetctl's own CPU decoding 10,000 units'
		  options (JSON, malloc: see the profile).
		EOF
		;;
	place_1000 | place_1000_quiet | place_200) cat <<-'EOF'
		- **placing 10,000 units on 1,000 machines**: the engine writes 16 create-only
		  `job/<unit>/target` keys at a time, renewing its lease beside the batch, planning on its
		  mirror overlaid with its own completed writes, so it never waits for the mirror between
		  batches; the simulated agents meanwhile publish states and heartbeats (2 writes per unit
		  per refresh period). The Notes give etcd's own floor for 10,000 such writes; the rest is
		  round trips at 16 in flight on two cores shared with etcd and the simulator.
		EOF
		;;
	failover | failover_engine) cat <<-'EOF'
		- **replacement after a machine loss**: measured from the machine's last heartbeat, so it
		  holds the whole agent_ttl. Compare the rows: "etcd expires its key" (TTL plus etcd's
		  lateness: it expires keys on its leader's periodic sync, later under write load), the
		  engine's last schedule (it sees the expiry on its streaming watch, plans, unschedules and
		  schedules 50 units at 16 in flight), and the agents, which see the new targets through
		  their own mirrors (here: the simulator's, one pass every few hundred ms).
		EOF
		;;
	esac
}
{
	echo "# fleet benchmarks"
	echo
	echo "Generated by \`./build.sh bench\` (test/bench.sh) on $(date -u '+%Y-%m-%d %H:%M UTC'); fleet $REV."
	echo "Machine: $(nproc) CPUs ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), load average $LOAD0 at start, $LOAD1 at end;"
	echo "etcd $ETCD_VERSION (v2 API, one member, data on $TMPROOT); agent_ttl ${TTL} s; medians of the runs in column n."
	echo
	echo "| Measurement | Median | Target | Ratio | n | Notes |"
	echo "|---|---|---|---|---|---|"
	# Fields are tab-separated and may be empty: awk, not read (which merges empty fields).
	awk -F'\t' '{
		id = $1; label = $2; v = $3; unit = $4; t = $5; n = $6; notes = $7
		if (v == "skipped") { printf "| %s | skipped | %s | | 0 | %s |\n", label, t, notes; next }
		r = ""; vd = ""
		if (t ~ /^<= [0-9.]+$/ && v ~ /^[0-9.]+$/) {
			lim = substr(t, 4) + 0
			r = sprintf("%.2fx", v / lim)
			vd = (v + 0 <= lim) ? "met" : "**MISSED**"
		}
		tt = t == "" ? "" : t " " unit (vd == "" ? "" : " — " vd)
		printf "| %s | %s %s | %s | %s | %s | %s |\n", label, v, unit, tt, r, n, notes
	}' "$RES"
	echo
	if [ -s "$NOTES" ]; then
		echo "## Notes"
		echo
		cat "$NOTES"
		echo
	fi
	missed=$(awk -F'\t' '$5 ~ /^<= [0-9.]+$/ && $3 ~ /^[0-9.]+$/ && $3 + 0 > substr($5, 4) + 0 {print $1}' "$RES")
	if [ -n "$missed" ]; then
		echo "## Why targets are missed"
		echo
		declare -A why_seen=()
		for id in $missed; do
			w=$(why_missed "$id")
			[ -n "$w" ] && [ -z "${why_seen[${w%%$'\n'*}]:-}" ] || continue
			why_seen[${w%%$'\n'*}]=1
			echo "$w"
		done
		echo
	fi
	if [ -s "$HOT" ]; then
		echo "## Profiles of missed targets (perf, top self time)"
		echo
		cat "$HOT"
		echo
	fi
} >"$OUT/RESULTS.md"
cp "$RES" "$OUT/results.tsv"

# ---- plot ----
getv() { awk -F'\t' -v id="$1" '$1 == id && $3 != "skipped" {print $3}' "$RES"; }
if ! command -v gnuplot >/dev/null && [ "$(id -u)" = 0 ]; then
	log "installing gnuplot-nox"
	flock /tmp/apt.lock apt-get update -qq >/dev/null 2>&1
	DEBIAN_FRONTEND=noninteractive flock /tmp/apt.lock apt-get install -y -qq --no-install-recommends gnuplot-nox >/dev/null 2>&1
fi
if command -v gnuplot >/dev/null; then
	{
		for n in "${LIST_SIZES[@]}"; do
			echo "$n $(getv "list-unit-files_api_$n") $(getv "list-unit-files_etcd_$n") $(getv "list-units_api_$n") $(getv "list-units_etcd_$n") $(getv "etcd_read_$n") $(getv "snapshot_$n") $(getv "rss_$n")"
		done
	} | awk 'NF == 8' >"$T/list.dat"
	{
		v=$(getv place_200); [ -n "$v" ] && echo "200 $v"
		v=$(getv place_1000); [ -n "$v" ] && echo "1000 $v"
	} >"$T/place.dat"
	v=$(getv place_1000_quiet)
	if [ -n "$v" ]; then echo "1000 $v" >"$T/placeq.dat"; else : >"$T/placeq.dat"; fi
	cat >"$T/plot.gp" <<-GP
		set terminal pngcairo size 1400,1000 font ",11"
		set output "$OUT/scale.png"
		set multiplot layout 2,2 title "fleet: cost against cluster size (medians, $(nproc) CPUs, etcd on tmpfs)"
		set grid
		set key top left
		set logscale x
		set xlabel "units in the registry"
		set ylabel "ms"
		set logscale y
		set title "fleetctl listing (targets: list-unit-files via API <= 30 ms at 1k, <= 200 ms at 10k)"
		plot "$T/list.dat" u 1:2 w lp lw 2 t "list-unit-files, API", \
		     "" u 1:3 w lp lw 2 t "list-unit-files, etcd driver", \
		     "" u 1:4 w lp t "list-units, API", \
		     "" u 1:5 w lp t "list-units, etcd driver", \
		     "" u 1:6 w lp dt 2 t "etcd: one recursive GET (curl)", \
		     "+" u (\$0 == 0 ? 1000 : 10000):(\$0 == 0 ? 30 : 200) every ::0::1 w p pt 7 ps 2 t "targets"
		set title "registry mirror: one change applied (CPU per daemon, microseconds)"
		set ylabel "us"
		plot "$T/list.dat" u 1:7 w lp lw 2 t "one etcd event applied"
		unset logscale y
		set ylabel "MiB"
		set title "daemon resident memory (target <= 16 MiB at 10k)"
		plot "$T/list.dat" u 1:8 w lp lw 2 t "VmRSS", 16 w l dt 2 t "target 10k"
		unset logscale x
		set xlabel "simulated machines (10,000 units)"
		set ylabel "s"
		set xrange [0:1100]
		set title "engine: placing 10,000 units from a cold start (target <= 10 s at 1,000)"
		set yrange [0:*]
		plot "$T/place.dat" u 1:2 w lp lw 2 pt 7 t "placement time (agents publishing)", \
		     "$T/placeq.dat" u 1:2 w p pt 5 ps 1.5 t "engine alone (machines only heartbeat)", \
		     10 w l dt 2 t "target"
		unset multiplot
	GP
	if [ -s "$T/list.dat" ] || [ -s "$T/place.dat" ]; then
		gnuplot "$T/plot.gp" 2>"$T/gnuplot.err" && log "plot: $OUT/scale.png" || { log "gnuplot failed"; cat "$T/gnuplot.err" >&2; }
	else
		log "nothing to plot"
	fi
else
	log "no gnuplot (not root, or apt failed): no plot"
fi

echo
awk -F'\t' '{
	r = ""
	if ($5 ~ /^<= [0-9.]+$/ && $3 ~ /^[0-9.]+$/) r = sprintf("%.2fx of target %s", $3 / substr($5, 4), $5)
	else if ($5 != "") r = "target " $5
	printf "%-88s %10s %-9s %s\n", $2, $3, $4, r
}' "$RES"
echo
echo "Results: $OUT/RESULTS.md, $OUT/results.tsv${OUT:+, $OUT/scale.png}"
log "done in $((SECONDS - START)) s"
