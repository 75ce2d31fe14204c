#!/usr/bin/env bash
# hardening.sh: hostile input, concurrency, load and resource limits, against the real parts: the
# shared etcd ($FLEET_TEST_ETCD, one key prefix per run), a real `fleet daemon` whose agent drives
# a real `systemd --user` manager (test/lib/systemd.sh), two real `fleet scheduler` engines, a
# private etcd for the outage cycles, fleetctl with both drivers, and valgrind on the same objects
# linked dynamically (test/fleet-valgrind: memcheck cannot follow malloc in a static binary).
#
#   api_hostile          every endpoint x a table of hostile requests (test/helper/api-hostile.py):
#                        the expected 4xx with {"error":{"code":N,...}}, raw etcd keys unchanged
#   ctl_hostile_files.D  fleetctl submit/start of hostile files (D = etcd, api driver): exit 1,
#                        the file (and line) named, registry unchanged
#   ctl_hostile_names.D  every unit command with hostile names: refused or a no-op, unchanged
#   ctl_batch_atomic.D   submit a b c with b bad: nothing submitted, b and the reason named
#   concurrent_writers   two fleetctl (one per driver) submit and destroy the same 50 units at
#                        once: the registry stays consistent
#   engine_lease         two schedulers race for the lease, the leader is frozen: never two
#                        leaders, every job/<u>/target created exactly once
#   slowloris            1 byte/s clients get 408, others are served meanwhile
#   conn_limit           300 idle connections: the excess get 503, a fresh client is served after
#   api_load             200 concurrent clients: every request answered (figures printed)
#   fd_requests          10,000 requests (keep-alive and not): the daemon's fd count returns
#   fd_etcd_outages      20 outages of a private etcd (SIGSTOP, SIGKILL+restart): fd count stable
#   valgrind             memcheck over a daemon scenario (units on systemd, API errors, SIGTERM)
#
# Every process started here is recorded and stopped by PID on exit; the run's keys are removed.
. "$(dirname "$0")/../lib/testlib.sh"

T=$(mktemp -d /tmp/fleet-hard.XXXXXX)
PIDS=()
OWN_ETCD=
SD_STARTED=
RUN=$$-$RANDOM
ROOT=/fleet-test-hard/$RUN
ETCD=${FLEET_TEST_ETCD:-}
ETCD1=${ETCD%%,*}
LOAD=$FLEET_BUILD/test/api-load
VGBIN=$FLEET_BUILD/test/fleet-valgrind
HOSTILE=$TL_TOP/test/helper/api-hostile.py

cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill -CONT "$p" 2>/dev/null; kill "$p" 2>/dev/null; done
	for p in "${PIDS[@]}"; do
		for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	if [ -n "$OWN_ETCD" ]; then
		FLEET_TEST_STATE=$T/etcd "$TL_TOP/test/lib/etcd.sh" stop "$OWN_ETCD" >/dev/null 2>&1
	fi
	[ -n "$SD_STARTED" ] && sd_stop >/dev/null 2>&1
	[ -n "$ETCD1" ] && curl -fs --max-time 5 -XDELETE "$ETCD1/v2/keys$ROOT?recursive=true" >/dev/null 2>&1
	rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ALL_CASES="api_hostile ctl_hostile_files.etcd ctl_hostile_files.api ctl_hostile_names.etcd ctl_hostile_names.api
 ctl_batch_atomic.etcd ctl_batch_atomic.api concurrent_writers engine_lease slowloris conn_limit api_load
 fd_requests fd_etcd_outages valgrind"
skip_all() { local c; for c in $ALL_CASES; do t_skip "hardening.$c" "$1"; done; exit 0; }

[ -n "$ETCD" ] || skip_all "no etcd (FLEET_TEST_ETCD unset)"
for tool in curl jq python3; do
	command -v $tool >/dev/null || skip_all "$tool not installed"
done
[ -x "$LOAD" ] || skip_all "no $LOAD (build the test helpers)"

# ---- etcd ----
# Every leaf key and value (and every directory) under a prefix, sorted: the "nothing was
# written" oracle. TTL refreshes rewrite no value, so they do not show.
dump() { # PREFIX [ENDPOINT]
	curl -fs --max-time 5 "${2:-$ETCD1}/v2/keys${1%/}?recursive=true&sorted=true" |
		jq -r '[.. | objects | select(has("key")) | if .dir then "\(.key)/" else "\(.key)=\(.value)" end] | sort | .[]' 2>/dev/null
}
# unchanged BEFORE-FILE PREFIX: compares a dump with an earlier one
unchanged() {
	dump "$2" >"$T/after"
	cmp -s "$1" "$T/after" && return 0
	echo "registry under $2 changed:"
	diff "$1" "$T/after" | head -20
	return 1
}
etcd_put() { curl -fs --max-time 3 -XPUT "$ETCD1/v2/keys$1" --data-urlencode "value=$2" >/dev/null; }

# ---- processes ----
new_id() { od -An -tx1 -N16 /dev/urandom | tr -d ' \n'; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# write_conf NAME ENDPOINTS PREFIX [EXTRA LINES...]: $T/NAME.conf, API on $T/NAME.sock
write_conf() {
	local name=$1 eps=$2 prefix=$3; shift 3
	mkdir -p "$T/$name.units"
	{
		echo "etcd_servers=$eps"
		echo "etcd_key_prefix=$prefix"
		echo "agent_ttl=3s"
		echo "engine_reconcile_interval=1"
		echo "public_ip=127.0.0.1"
		echo "units_directory=$T/$name.units/"
		echo "systemd_user=true"
		printf '%s\n' "$@"
		# never the default /var/run/fleet.sock: a private socket unless the caller names one
		grep -q '^api_listen=' <(printf '%s\n' "$@") || echo "api_listen=unix:$T/$name.sock"
	} >"$T/$name.conf"
}

# start_fleet NAME ID APPLET [WRAPPER...]: runs `fleet APPLET -config $T/NAME.conf`; with a
# WRAPPER (valgrind and its options), `WRAPPER test/fleet-valgrind APPLET ...`
start_fleet() {
	local name=$1 id=$2 applet=$3 bin=$FLEET_BIN; shift 3
	echo "$id" >"$T/$name.machine-id"
	rm -f "$T/$name.sock"
	[ $# -gt 0 ] && bin=$VGBIN
	FLEET_MACHINE_ID_FILE=$T/$name.machine-id "$@" "$bin" "$applet" -config "$T/$name.conf" \
		>"$T/$name.log" 2>&1 </dev/null &
	PIDS+=($!)
	eval "PID_$name=$!"
}
pid_of() { eval "echo \$PID_$1"; }

# stop_fleet NAME [SECONDS]: SIGTERM, waits; returns the exit status (124: killed after SECONDS)
stop_fleet() {
	local pid i
	pid=$(pid_of "$1")
	kill -CONT "$pid" 2>/dev/null
	kill -TERM "$pid" 2>/dev/null
	for i in $(seq $((${2:-30} * 10))); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -0 "$pid" 2>/dev/null && { kill -9 "$pid"; wait "$pid" 2>/dev/null; return 124; }
	wait "$pid"
}

api_code() { curl -s --max-time 5 --unix-socket "$T/$1.sock" -o /dev/null -w '%{http_code}' "http://fleet${2:-/fleet/v1/units}"; }
api_up() { [ "$(api_code "$@")" = 200 ]; }
fd_count() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }
fd_list() { for f in /proc/"$1"/fd/*; do readlink "$f"; done 2>/dev/null | sed 's/\[[0-9]*\]//' | sort | uniq -c; }

# fc DRIVER ARGS...: fleetctl against the main daemon's registry; RC, $T/out, $T/err
P1=$ROOT/main/
fc() {
	local drv=$1; shift
	if [ "$drv" = etcd ]; then
		timeout 60 "$FLEET_BIN" ctl --driver=etcd --endpoint "$ETCD" --etcd-key-prefix "$P1" "$@" \
			>"$T/out" 2>"$T/err" </dev/null
	else
		timeout 60 "$FLEET_BIN" ctl --endpoint "unix://$T/d1.sock" "$@" >"$T/out" 2>"$T/err" </dev/null
	fi
	RC=$?
}
err_has() { grep -qF -- "$1" "$T/err" && return 0; echo "stderr lacks [$1]: $(head -c 400 "$T/err")"; return 1; }

# ==== the main daemon: API, fleetctl, limits ====

D1_PORT=
start_main() {
	D1_PORT=$(free_port)
	write_conf d1 "$ETCD" "$P1" "disable_engine=true" "api_listen=unix:$T/d1.sock,tcp:127.0.0.1:$D1_PORT"
	start_fleet d1 "$(new_id)" daemon
	wait_until 20 api_up d1 || { echo "daemon did not serve the API"; tail -20 "$T/d1.log"; return 1; }
}

c_api_hostile() {
	python3 "$HOSTILE" "$T/d1.sock" "$ETCD1" "$P1"
}

# The hostile files, made once: NAME|PATTERN (PATTERN: what stderr must say besides the path)
make_files() {
	local F=$T/f
	mkdir -p "$F"
	# No NUL: its own message ("NUL byte") would come before the invalid UTF-8 checked for.
	head -c 4096 /dev/urandom | tr -d '\000' >"$F/junk.service"
	printf '\xff\xfe' >>"$F/junk.service"
	head -c $((10 * 1024 * 1024)) /dev/zero | tr '\0' a >"$F/big.service"
	printf '[Service]\nExecStart=/bin/true\0rm -rf /\n' >"$F/nul.service"
	printf '[Service]\nExecStart=/bin/\xff\xfe\n' >"$F/utf8.service"
	printf '[Service]\nExecStart=/bin/true\nthis line has no equals sign\n' >"$F/noeq.service"
	printf '[Service\nExecStart=/bin/true\n' >"$F/nosecend.service"
	printf '[Service]\nExecStart=%s\n' "$(head -c 3000 /dev/zero | tr '\0' x)" >"$F/longline.service"
	printf '[X-Fleet]\nGlobal=true\nMachineID=abc\n' >"$F/globalid.service"
	printf '[X-Fleet]\nGlobal=true\nMachineOf=a.service\n' >"$F/globalpeer.service"
	printf '[X-Fleet]\nMachineOf=b.service\nConflicts=b.*\n' >"$F/selfconflict.service"
	printf '[X-Fleet]\nConflicts=a.service\nReplaces=b.service\n' >"$F/conflictreplace.service"
	mkdir -p "$F/dir.service"
	ln -sf /dev/zero "$F/zero.service"
	mkfifo "$F/fifo.service"
	printf '[Service]\nExecStart=/bin/true\n' >"$F/good.service"
	cp "$F/good.service" "$F/a;rm -rf ~.service"
	cp "$F/good.service" "$F/été.service"
	cp "$F/good.service" "$F/"$'new\nline'".service"
	cat >"$T/files" <<LIST
junk.service|line 1: invalid UTF-8
big.service|unit file too large
nul.service|line 2: NUL byte
utf8.service|line 2: invalid UTF-8
noeq.service|line 3: unexpected newline
nosecend.service|line 1: unable to find end of section
longline.service|line 2: line too long (max 2048 bytes)
globalid.service|MachineID cannot be used with Global
globalpeer.service|Global cannot be used with Peers
selfconflict.service|unresolvable requirements: peer "b.service" matches conflict "b.*"
conflictreplace.service|Conflicts cannot be used with Replaces
dir.service|is a directory
zero.service|not a regular file
fifo.service|not a regular file
a;rm -rf ~.service|invalid character ';' in unit name
été.service|invalid character 'é' in unit name
LIST
}

c_ctl_hostile_files() {
	local drv=$1 f pat cmd bad=0
	dump "$P1" >"$T/before"
	while IFS='|' read -r f pat; do
		for cmd in submit load start; do
			[ "$cmd" != submit ] && [ "$f" != junk.service ] && [ "$f" != globalid.service ] &&
				[ "$f" != "a;rm -rf ~.service" ] && continue
			if [ "$cmd" = submit ]; then
				fc "$drv" submit "$T/f/$f"
			else
				fc "$drv" "$cmd" --no-block "$T/f/$f"
			fi
			if [ "$RC" != 1 ]; then
				echo "$cmd $f: exit $RC, want 1"; bad=1
			fi
			err_has "$T/f/$f" || bad=1
			err_has "$pat" || bad=1
			unchanged "$T/before" "$P1" || bad=1
		done
	done <"$T/files"
	# a line break in the file name
	fc "$drv" submit "$T/f/"$'new\nline'".service"
	[ "$RC" = 1 ] && err_has "invalid character '\\n' in unit name" || bad=1
	# names longer than any file name
	fc "$drv" submit "$T/f/$(head -c 300 /dev/zero | tr '\0' a).service"
	[ "$RC" = 1 ] && err_has "File name too long" || bad=1
	fc "$drv" submit "$T/f/$(head -c 10240 /dev/zero | tr '\0' a).service"
	[ "$RC" = 1 ] && err_has "failed getting Unit($T/f/aaaa" || bad=1
	unchanged "$T/before" "$P1" || bad=1
	return $bad
}

c_ctl_hostile_names() {
	local drv=$1 n cmd bad=0 long
	long=$(head -c 10240 /dev/zero | tr '\0' a).service
	dump "$P1" >"$T/before"
	for n in '../../etc/passwd.service' '..' '/' 'a;rm -rf ~.service' '$(touch '"$T"'/pwned).service' \
		'été.service' $'new\nline.service' "$long" 'x.exe' '@x.service' '*' '%00.service'; do
		for cmd in load start stop unload destroy cat status journal; do
			fc "$drv" "$cmd" -- "$n"
			case $cmd in
			stop | unload | destroy)
				# fleet's answer for names not in the registry: a message, exit 0
				if [ "$RC" != 0 ] && [ "$RC" != 1 ]; then echo "$cmd '${n:0:40}': exit $RC"; bad=1; fi
				;;
			*)
				if [ "$RC" != 1 ]; then echo "$cmd '${n:0:40}': exit $RC, want 1"; bad=1; fi
				;;
			esac
			[ -s "$T/err" ] || { echo "$cmd '${n:0:40}': no message"; bad=1; }
		done
		unchanged "$T/before" "$P1" || bad=1
	done
	[ ! -e "$T/pwned" ] || { echo "a unit name was executed"; bad=1; }
	return $bad
}

# submit a b c where b is bad: nothing is written, b and the reason are named.
c_ctl_batch_atomic() {
	local drv=$1 b pat bad=0 B=$T/batch-$1 k=0 bn
	mkdir -p "$B"
	for b in nul globalid noeq 'a;rm -rf ~' missing; do
		k=$((k + 1))
		bn="b$k-$b.service"
		case $b in
		nul) pat="line 2: NUL byte" ;;
		globalid) pat="MachineID cannot be used with Global" ;;
		noeq) pat="line 3:" ;;
		'a;rm -rf ~') pat="invalid character ';' in unit name" ;;
		missing) pat="unable to find Unit(b$k-missing.service)" ;;
		esac
		printf '[Service]\nExecStart=/bin/echo %s a\n' "$drv" >"$B/a$k.service"
		printf '[Service]\nExecStart=/bin/echo %s c\n' "$drv" >"$B/c$k.service"
		[ "$b" = missing ] || cp "$T/f/$b.service" "$B/$bn"
		dump "$P1" >"$T/before"
		fc "$drv" submit "$B/a$k.service" "$B/$bn" "$B/c$k.service"
		[ "$RC" = 1 ] || { echo "b=$b: exit $RC"; bad=1; }
		err_has "$bn" && err_has "$pat" || bad=1
		unchanged "$T/before" "$P1" || { echo "b=$b: something was submitted"; bad=1; }
		fc "$drv" start --no-block "$B/a$k.service" "$B/$bn" "$B/c$k.service"
		[ "$RC" = 1 ] || { echo "start b=$b: exit $RC"; bad=1; }
		unchanged "$T/before" "$P1" || { echo "start b=$b: something was written"; bad=1; }
	done
	# and the good batch goes in whole
	cp "$T/f/good.service" "$B/b-good.service"
	printf '[Service]\nExecStart=/bin/echo %s a\n' "$drv" >"$B/a-good.service"
	printf '[Service]\nExecStart=/bin/echo %s c\n' "$drv" >"$B/c-good.service"
	fc "$drv" submit "$B/a-good.service" "$B/b-good.service" "$B/c-good.service"
	[ "$RC" = 0 ] || { echo "good batch: exit $RC: $(cat "$T/err")"; return 1; }
	fc "$drv" destroy a-good b-good c-good
	[ "$RC" = 0 ] || { echo "destroy: exit $RC"; return 1; }
	return $bad
}

# Two fleetctl processes, one per driver, submit and destroy the same 50 units at the same time;
# afterwards every job has its object, every object its unit file, and both drivers list them.
c_concurrent_writers() {
	local C=$T/cc i pa pb bad=0 drv
	mkdir -p "$C"
	for i in $(seq 1 50); do printf '[Service]\nExecStart=/bin/echo %s\n' "$i" >"$C/cc-$i.service"; done
	# destroy waits until the unit is gone, which a unit the other writer re-creates never is:
	# --block-attempts bounds that. (submit's wait gives up on a unit destroyed meanwhile.)
	writer() { # DRIVER ROUNDS
		local r a=(--endpoint "unix://$T/d1.sock")
		[ "$1" = etcd ] && a=(--driver=etcd --endpoint "$ETCD" --etcd-key-prefix "$P1")
		for r in $(seq 1 "$2"); do
			timeout 60 "$FLEET_BIN" ctl "${a[@]}" submit "$C"/cc-*.service
			echo "submit rc=$?"
			timeout 60 "$FLEET_BIN" ctl "${a[@]}" destroy --block-attempts=1 $(cd "$C" && echo cc-*.service)
			echo "destroy rc=$?"
		done
		timeout 60 "$FLEET_BIN" ctl "${a[@]}" submit "$C"/cc-1*.service
		echo "submit rc=$?"
	}
	writer etcd 4 >"$T/writer-etcd.log" 2>&1 </dev/null &
	pa=$!
	PIDS+=($pa)
	writer api 4 >"$T/writer-api.log" 2>&1 </dev/null &
	pb=$!
	PIDS+=($pb)
	# meanwhile, API clients create and destroy 20 other units as fast as they can: every
	# create has its unit file, object and target-state written one after the other, and a
	# destroy may land in between
	python3 - "$T/d1.sock" <<'PY' &
import socket, sys, threading, time
def req(m, path, body=b""):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(20)
    s.connect(sys.argv[1])
    s.sendall(("%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
               "Content-Length: %d\r\n\r\n" % (m, path, len(body))).encode() + body)
    while s.recv(65536):
        pass
    s.close()
stop = time.time() + 4
def putter(k):
    i = 0
    while time.time() < stop:
        i += 1
        req("PUT", "/fleet/v1/units/race-%d.service" % (i % 20), (
            '{"desiredState":"loaded","options":[{"section":"Service","name":"ExecStart","value":"/bin/echo %d %d"}]}'
            % (i % 20, k)).encode())
def deleter():
    i = 0
    while time.time() < stop:
        i += 1
        req("DELETE", "/fleet/v1/units/race-%d.service" % (i % 20))
ts = [threading.Thread(target=putter, args=(k,)) for k in range(3)] + [threading.Thread(target=deleter) for _ in range(3)]
for t in ts: t.start()
for t in ts: t.join()
PY
	local pr=$!
	PIDS+=($pr)
	wait $pa; wait $pb; wait $pr
	grep -q "rc=124" "$T"/writer-*.log && { echo "a fleetctl hung (timeout 60 s)"; bad=1; }
	grep -h "rc=" "$T"/writer-*.log | sort | uniq -c | tr '\n' ' '; echo
	sleep 0.5
	curl -fs --max-time 5 "$ETCD1/v2/keys${P1%/}?recursive=true" >"$T/tree.json" || return 1
	python3 - "$T/tree.json" "$P1" <<'PY' || bad=1
import json, sys
doc = json.load(open(sys.argv[1])); prefix = sys.argv[2]
nodes = {}
def walk(n):
    nodes[n["key"]] = n
    for c in n.get("nodes", []): walk(c)
walk(doc["node"])
jobs = {k[len(prefix) + 4:].split("/")[0] for k in nodes if k.startswith(prefix + "job/") and k.count("/") >= prefix.count("/") + 1}
bad = 0
for u in sorted(jobs):
    base = prefix + "job/" + u
    if base + "/object" not in nodes:
        print("job %s has no object: %s" % (u, sorted(k[len(base):] for k in nodes if k.startswith(base + "/"))))
        bad += 1
        continue
    if base + "/target-state" not in nodes:
        print("job %s has no target-state" % u)
        bad += 1
    obj = json.loads(nodes[base + "/object"]["value"])
    h = "".join("%02x" % b for b in obj["UnitHash"])
    if obj.get("Name") != u:
        print("job %s: object names %r" % (u, obj.get("Name"))); bad += 1
    if prefix + "unit/" + h not in nodes:
        print("job %s: unit/%s missing" % (u, h)); bad += 1
print("%d jobs checked, %d inconsistent" % (len(jobs), bad))
sys.exit(1 if bad else 0)
PY
	for drv in etcd api; do
		fc "$drv" list-unit-files --no-legend
		[ "$RC" = 0 ] || { echo "list-unit-files ($drv): exit $RC: $(cat "$T/err")"; bad=1; }
	done
	# tidy up for the cases after this one
	fc etcd destroy --block-attempts=1 $(cd "$C" && echo cc-*.service) race-{0..19}.service
	return $bad
}

# Two engines (`fleet scheduler`, their own machine IDs) race for the lease; the leader is frozen
# (SIGSTOP) beyond its lease so the other takes over. The lease key is sampled every 100 ms and
# etcd's event history is read back: never two leaders, every target written once (create-only).
c_engine_lease() {
	local P=$ROOT/lease/ A B i m leader frozen start_idx bad=0 E=$T/lease
	mkdir -p "$E"
	A=$(new_id); B=$(new_id)
	for m in 1 2 3; do
		etcd_put "${P}machines/m$m$RUN/object" \
			"{\"ID\":\"m$m$RUN\",\"PublicIP\":\"10.0.0.$m\",\"Metadata\":{},\"Capabilities\":{\"DISABLE_ENGINE\":true,\"GRPC\":false},\"Version\":\"1.0.0\"}" || return 1
	done
	for i in $(seq 1 30); do printf '[Service]\nExecStart=/bin/true %s\n' "$i" >"$E/lease-$i.service"; done
	start_idx=$(curl -fs -o /dev/null -D - --max-time 3 "$ETCD1/v2/keys/" | tr -d '\r' | sed -n 's/^X-Etcd-Index: //Ip')
	write_conf sa "$ETCD" "$P"
	write_conf sb "$ETCD" "$P"
	start_fleet sa "$A" scheduler
	start_fleet sb "$B" scheduler
	python3 - "$ETCD1" "${P}lease/engine-leader" "$T/lease.samples" <<'PY' >"$T/sampler.log" 2>&1 &
import json, sys, time, urllib.request, urllib.error
ep, key, out = sys.argv[1:4]
end = time.time() + 40
with open(out, "w") as f:
    while time.time() < end:
        try:
            with urllib.request.urlopen("%s/v2/keys%s" % (ep, key), timeout=2) as r:
                v = json.load(r)["node"]["value"]
                try:
                    v = json.loads(v).get("MachineID", v)
                except ValueError:
                    pass
        except urllib.error.HTTPError:
            v = "-"
        except Exception as e:
            v = "?"
        f.write("%.2f %s\n" % (time.time(), v)); f.flush()
        time.sleep(0.1)
PY
	PIDS+=($!)
	local sampler=$!
	leader_now() { tail -1 "$T/lease.samples" 2>/dev/null | awk '{print $2}'; }
	wait_until 15 eval '[ "$(leader_now)" = "$A" ] || [ "$(leader_now)" = "$B" ]' || { echo "no leader"; tail "$T"/s[ab].log; return 1; }
	fc_lease() { timeout 60 "$FLEET_BIN" ctl --driver=etcd --endpoint "$ETCD" --etcd-key-prefix "$P" "$@" >>"$T/lease.ctl" 2>&1 </dev/null; }
	fc_lease start --no-block "$E"/lease-{1..20}.service || { echo "start failed"; cat "$T/lease.ctl"; return 1; }
	scheduled() { [ "$(curl -fs "$ETCD1/v2/keys${P}job?recursive=true" | jq '[.. | objects | select(.key? // "" | endswith("/target"))] | length')" -ge "$1" ]; }
	wait_until 20 scheduled 20 || { echo "20 units not scheduled"; return 1; }
	leader=$(leader_now)
	frozen=$([ "$leader" = "$A" ] && echo sa || echo sb)
	echo "leader $leader ($frozen), freezing it for 8 s (lease TTL 5 s)"
	kill -STOP "$(pid_of "$frozen")"
	fc_lease start --no-block "$E"/lease-{21..30}.service
	wait_until 25 scheduled 30 || { echo "units 21-30 not scheduled by the other engine"; bad=1; }
	sleep 1
	kill -CONT "$(pid_of "$frozen")"
	sleep 3
	kill "$sampler" 2>/dev/null
	wait "$sampler" 2>/dev/null
	stop_fleet sa 10; stop_fleet sb 10
	python3 - "$T/lease.samples" "$A" "$B" <<'PY' || bad=1
import sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
ids = set(sys.argv[2:4])
seen, gap, max_gap, gap_start, changes, last, bad = False, False, 0.0, 0, 0, None, 0
for t, v in rows:
    t = float(t)
    if v in ids:
        if gap:
            max_gap = max(max_gap, t - gap_start)
        gap = False
        if last is not None and v != last:
            changes += 1
        last = v
        seen = True
    elif v in ("-", "?"):
        if seen and not gap:
            gap, gap_start = True, t
    else:
        print("lease held by a stranger: %s" % v); bad = 1
print("%d samples, leadership changes %d, longest time without a leader %.1f s" % (len(rows), changes, max_gap))
if changes < 1:
    print("leadership never moved to the other engine"); bad = 1
if max_gap > 5.0:
    print("no leader for %.1f s" % max_gap); bad = 1
sys.exit(bad)
PY
	# etcd's history of the job keys since the start: each target is created exactly once
	python3 - "$ETCD1" "${P%/}/job" "$start_idx" <<'PY' || bad=1
import json, sys, urllib.request, urllib.error, collections
ep, d, idx = sys.argv[1], sys.argv[2], int(sys.argv[3]) + 1
with urllib.request.urlopen("%s/v2/keys/" % ep, timeout=3) as r:
    top = int(r.headers["X-Etcd-Index"])
acts = collections.defaultdict(list)
n = 0
while idx <= top:
    try:
        with urllib.request.urlopen("%s/v2/keys%s?wait=true&recursive=true&waitIndex=%d" % (ep, d, idx), timeout=2) as r:
            ev = json.load(r)
    except urllib.error.HTTPError as e:
        print("etcd history unavailable (%s): checking indexes instead" % e.code)
        acts = None
        break
    except Exception:
        break  # no later event under the prefix
    node = ev["node"]
    if node["modifiedIndex"] > top:
        break
    if node["key"].endswith("/target"):
        acts[node["key"]].append(ev["action"])
    n += 1
    idx = node["modifiedIndex"] + 1
bad = 0
if acts is not None:
    for k, a in sorted(acts.items()):
        if a != ["create"]:
            print("%s: %s" % (k, a)); bad = 1
    print("%d job events read back, %d targets, each created once: %s" % (n, len(acts), "yes" if not bad else "NO"))
    if len(acts) != 30:
        print("want 30 targets"); bad = 1
else:
    with urllib.request.urlopen("%s/v2/keys%s?recursive=true" % (ep, d), timeout=5) as r:
        doc = json.load(r)
    def walk(nd):
        global bad
        if nd["key"].endswith("/target") and nd["createdIndex"] != nd["modifiedIndex"]:
            print("%s rewritten" % nd["key"]); bad = 1
        for c in nd.get("nodes", []): walk(c)
    walk(doc["node"])
sys.exit(bad)
PY
	grep -h "leadership\|Engine leader" "$T/sa.log" "$T/sb.log" | sort | uniq -c | head
	return $bad
}

# Slow clients (1 byte/s, in a request head and in a body) run in the background from the start
# (the server's request timeout is 30 s); the probe inside api-load meanwhile asks every 250 ms.
SLOW_PID=
slowloris_start() {
	"$LOAD" "unix:$T/d1.sock" slowloris 50 >"$T/slowloris.out" 2>&1 </dev/null &
	SLOW_PID=$!
	PIDS+=($SLOW_PID)
}
c_slowloris() {
	local out
	wait "$SLOW_PID"
	out=$(cat "$T/slowloris.out")
	echo "$out"
	case $out in *"head=408@"*"body=408@"*) ;; *) echo "slow clients were not answered 408"; return 1 ;; esac
	local probes ok
	probes=$(sed -n 's/.* probes=\([0-9]*\).*/\1/p' <<<"$out")
	ok=$(sed -n 's/.* probe_ok=\([0-9]*\).*/\1/p' <<<"$out")
	[ -n "$probes" ] && [ "$probes" -ge 20 ] && [ "$probes" = "$ok" ] || { echo "probes blocked or failed"; return 1; }
}

c_conn_limit() {
	local out
	out=$("$LOAD" "tcp:127.0.0.1:$D1_PORT" idle 300) || return 1
	echo "$out"
	local idle s503 closed other held fresh
	eval "$(tr ' ' '\n' <<<"$out" | grep -E '^(idle|s503|closed|other|held|fresh)=[0-9-]+$')"
	[ "$other" = 0 ] && [ "$closed" = 0 ] || { echo "connections refused without a 503, or odd answers"; return 1; }
	[ "$idle" -le 256 ] && [ $((idle + s503)) = 300 ] && [ "$s503" -ge 44 ] || { echo "limit not at 256"; return 1; }
	[ "$held" = 503 ] || { echo "a client over the limit got $held"; return 1; }
	[ "$fresh" = 200 ] || { echo "no 200 for a fresh client afterwards"; return 1; }
	api_up d1
}

c_api_load() {
	local out rc
	out=$("$LOAD" "tcp:127.0.0.1:$D1_PORT" load 200 50 1 60 /fleet/v1/units /fleet/v1/machines /fleet/v1/state \
		/fleet/v1/units/none.service /metrics /fleet/v1/discovery /v1-alpha/units?nextPageToken=bad)
	rc=$?
	echo "keep-alive: $out"
	[ $rc = 0 ] || return 1
	out=$("$LOAD" "unix:$T/d1.sock" load 200 10 0 60 /fleet/v1/units /fleet/v1/machines /fleet/v1/state/none.service)
	rc=$?
	echo "connection per request: $out"
	[ $rc = 0 ] || return 1
	api_up d1
}

# wait_fds PID MAX SECONDS: until the process has at most MAX fds
wait_fds() { wait_until "$3" eval '[ "$(fd_count '"$1"')" -le '"$2"' ]'; }

c_fd_requests() {
	local pid before after out
	pid=$(pid_of d1)
	sleep 2.5 # connections of earlier cases are gone (the server lingers 2 s after a close)
	before=$(fd_count "$pid")
	fd_list "$pid" >"$T/fd.before"
	out=$("$LOAD" "tcp:127.0.0.1:$D1_PORT" load 10 500 1 60 /fleet/v1/units /fleet/v1/units/none.service \
		/fleet/v1/state /v1-alpha/machines?nextPageToken=! /metrics) || { echo "$out"; return 1; }
	echo "keep-alive: $out"
	out=$("$LOAD" "unix:$T/d1.sock" load 10 500 0 60 /fleet/v1/units /fleet/v1/units/none.service \
		/nope /fleet/v1/machines) || { echo "$out"; return 1; }
	echo "connection per request: $out"
	if ! wait_fds "$pid" "$before" 8; then
		after=$(fd_count "$pid")
		echo "fds: $before before, $after after 10000 requests"
		diff "$T/fd.before" <(fd_list "$pid")
		return 1
	fi
	echo "fds: $before before, $(fd_count "$pid") after 10000 requests"
}

# A daemon on a private etcd that goes away 20 times: frozen (SIGSTOP) or killed and restarted
# on the same port and data. The daemon's fd count must come back to where it was.
c_fd_etcd_outages() {
	local eps epid pid before after i cmd=() now log=$T/etcd/outage.log
	OWN_ETCD=hard-fd$$
	mkdir -p "$T/etcd"
	eps=$(FLEET_TEST_STATE=$T/etcd "$TL_TOP/test/lib/etcd.sh" start "$OWN_ETCD" 1) || { echo "private etcd failed"; return 1; }
	epid=$(head -1 "$T/etcd/$OWN_ETCD.pids")
	mapfile -d '' cmd <"/proc/$epid/cmdline"
	write_conf d2 "$eps" "$ROOT/fd/" "agent_ttl=2s"
	start_fleet d2 "$(new_id)" daemon
	pid=$(pid_of d2)
	wait_until 20 api_up d2 /fleet/v1/machines || { echo "d2 API down"; tail "$T/d2.log"; return 1; }
	sleep 2
	before=$(fd_count "$pid")
	fd_list "$pid" >"$T/fd2.before"
	for i in $(seq 1 20); do
		if [ $((i % 2)) = 1 ]; then
			kill -STOP "$epid"; sleep 1.5; kill -CONT "$epid"
		else
			kill -9 "$epid"
			for _ in $(seq 50); do kill -0 "$epid" 2>/dev/null || break; sleep 0.05; done
			sleep 0.5
			env $(compgen -e | grep '^ETCD_' | sed 's/^/-u /') "${cmd[@]}" >>"$log" 2>&1 </dev/null &
			epid=$!
			disown "$epid" # killed by PID below and at exit (the pids file), not reported by bash
			echo "$epid" >"$T/etcd/$OWN_ETCD.pids"
			wait_until 10 curl -fs --max-time 1 "${eps%%,*}/health" >/dev/null ||
				{ echo "etcd did not come back"; tail -5 "$log"; return 1; }
		fi
		if ! wait_until 20 api_up d2 /fleet/v1/machines; then
			echo "cycle $i: the daemon's API did not come back: $(api_code d2 /fleet/v1/machines)"
			tail -5 "$T/d2.log"
			return 1
		fi
		now=$(fd_count "$pid")
		echo "cycle $i: $now fds"
	done
	kill -0 "$pid" || { echo "daemon died"; return 1; }
	if ! wait_fds "$pid" "$before" 10; then
		after=$(fd_count "$pid")
		echo "fds: $before before, $after after 20 outages"
		diff "$T/fd2.before" <(fd_list "$pid")
		return 1
	fi
	echo "fds: $before before, $(fd_count "$pid") after 20 outages"
	grep -c "Server monitor triggered\|Restarting server" "$T/d2.log" | sed 's/^/monitor restarts: /'
	stop_fleet d2 20
}

# memcheck over a short life of the daemon: units submitted, started on systemd, stopped and
# destroyed, hostile API requests, SIGTERM. Definite leaks and memory errors fail.
c_valgrind() {
	local P=$ROOT/vg/ V=$T/vg i rc u scen=0
	mkdir -p "$V"
	write_conf d3 "$ETCD" "$P" "agent_ttl=10s" "etcd_request_timeout=5"
	start_fleet d3 "$(new_id)" daemon valgrind --leak-check=full --errors-for-leak-kinds=definite \
		--error-exitcode=99 --track-fds=no --log-file="$T/valgrind.log"
	wait_until 90 api_up d3 /fleet/v1/machines || { echo "API under valgrind did not come up"; tail -20 "$T/d3.log"; return 1; }
	vc() { timeout 120 "$FLEET_BIN" ctl --endpoint "unix://$T/d3.sock" --request-timeout=20 "$@" >>"$V/ctl.log" 2>&1 </dev/null; }
	for i in 1 2 3; do printf '[Service]\nExecStart=/bin/sleep 600\n' >"$V/hv$RUN-$i.service"; done
	u=$(cd "$V" && echo hv*.service)
	vc submit "$V"/hv*.service || { echo "submit failed"; tail "$V/ctl.log"; scen=1; }
	vc start --no-block "$V"/hv*.service || { echo "start failed"; scen=1; }
	wait_until 90 eval '[ "$(timeout 30 "$FLEET_BIN" ctl --endpoint "unix://$T/d3.sock" --request-timeout=20 list-units --no-legend --fields unit,active 2>/dev/null | grep -c "	active")" = 3 ]' ||
		{ echo "units did not become active under valgrind"; tail -5 "$V/ctl.log"; scen=1; }
	# hostile requests while it runs
	for b in '{' '{"options":[{"section":"S\n[X]","name":"a","value":"b"}]}' '[1]' \
		"{\"options\":[{\"section\":\"Service\",\"name\":\"ExecStart\",\"value\":\"$(head -c 3000 /dev/zero | tr '\0' x)\"}]}"; do
		curl -s --max-time 20 --unix-socket "$T/d3.sock" -XPUT -H 'Content-Type: application/json' \
			--data-binary "$b" -o /dev/null http://fleet/fleet/v1/units/vg-bad.service
	done
	for p in '/fleet/v1/units?nextPageToken=!!' /fleet/v1/units/none.service /fleet/v1/state/x.service /metrics /nope \
		'/fleet/v1/machines?nextPageToken=AAAAAA=='; do
		curl -s --max-time 20 --unix-socket "$T/d3.sock" -o /dev/null "http://fleet$p"
	done
	curl -s --max-time 20 --unix-socket "$T/d3.sock" -XPATCH --data-binary '[{"op":"add","path":"/m/metadata/..","value":{"value":"v"}}]' -o /dev/null http://fleet/fleet/v1/machines
	printf 'GARBAGE\r\n\r\n' | timeout 5 python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(sys.stdin.buffer.read()); s.recv(100)' "$T/d3.sock"
	head -c 1100000 /dev/zero | curl -s --max-time 20 --unix-socket "$T/d3.sock" -XPUT -H 'Content-Type: application/json' \
		--data-binary @- -o /dev/null http://fleet/fleet/v1/units/vg-big.service
	vc stop --no-block $u
	wait_until 60 eval '[ "$(timeout 30 "$FLEET_BIN" ctl --endpoint "unix://$T/d3.sock" --request-timeout=20 list-units --no-legend --fields unit,active 2>/dev/null | grep -c "	active")" = 0 ]' ||
		{ echo "units did not stop under valgrind"; scen=1; }
	vc destroy --block-attempts=5 $u || { echo "destroy failed"; scen=1; }
	stop_fleet d3 90
	rc=$?
	grep -E "total heap usage|in use at exit|ERROR SUMMARY|definitely lost|indirectly lost|possibly lost|still reachable" \
		"$T/valgrind.log" | sed 's/^==[0-9]*== *//'
	if [ $rc != 0 ]; then
		echo "daemon under valgrind exited $rc"
		grep -B2 -A25 -E "Invalid|uninitialised|definitely lost in" "$T/valgrind.log" | head -80
		tail -5 "$T/d3.log"
		return 1
	fi
	grep -q "ERROR SUMMARY: 0 errors" "$T/valgrind.log" || return 1
	[ $scen = 0 ] || { echo "the scenario did not run through"; return 1; }
}

# ==== main ====
. "$TL_TOP/test/lib/systemd.sh"
WHY=
if sd_start "hard$$"; then
	SD_STARTED=1
else
	WHY="no systemd --user manager for the daemon's agent: $SD_WHY"
fi
make_files
if [ -n "$SD_STARTED" ] && start_main; then
	slowloris_start
	t_run hardening.api_hostile c_api_hostile
	for c in ctl_hostile_files ctl_hostile_names ctl_batch_atomic; do
		for d in etcd api; do t_run "hardening.$c.$d" "c_$c" $d; done
	done
	t_run hardening.concurrent_writers c_concurrent_writers
	t_run hardening.slowloris c_slowloris
	t_run hardening.conn_limit c_conn_limit
	t_run hardening.api_load c_api_load
	t_run hardening.fd_requests c_fd_requests
else
	[ -n "$SD_STARTED" ] && { t_fail hardening.daemon "the daemon did not start"; WHY="the daemon did not start"; }
	# fleetctl's etcd driver needs no daemon
	for c in ctl_hostile_files ctl_hostile_names ctl_batch_atomic; do
		t_run "hardening.$c.etcd" "c_$c" etcd
		t_skip "hardening.$c.api" "$WHY"
	done
	for c in api_hostile concurrent_writers slowloris conn_limit api_load fd_requests; do t_skip "hardening.$c" "$WHY"; done
fi
t_run hardening.engine_lease c_engine_lease
if [ -z "$SD_STARTED" ]; then
	t_skip hardening.fd_etcd_outages "$WHY"
	t_skip hardening.valgrind "$WHY"
	exit 0
fi
t_run hardening.fd_etcd_outages c_fd_etcd_outages
if ! command -v valgrind >/dev/null; then
	t_skip hardening.valgrind "valgrind not installed"
elif [ ! -x "$VGBIN" ]; then
	t_skip hardening.valgrind "no $VGBIN"
elif ldd "$VGBIN" 2>/dev/null | grep -q 'lib[atl]san\|libubsan'; then
	t_skip hardening.valgrind "sanitizer build (memcheck needs a plain one)"
else
	t_run hardening.valgrind c_valgrind
fi
exit 0
