#!/usr/bin/env bash
# api.sh: the HTTP API v1 end to end (spec §3) against a real etcd ($FLEET_TEST_ETCD), driven
# with curl --unix-socket: every endpoint, status codes and messages, pagination with a small
# token_limit, the PUT decision procedure, PATCH /machines, error cases (each checked to leave
# the raw etcd keys unchanged), read-your-writes, discovery, metrics and raw HTTP handling.
#
# The API runs in `fleet daemon` when that works here (engine disabled, so nothing but the
# test writes scheduling keys; its agent on a private `systemd --user` from test/lib/systemd.sh),
# else in test/helper/api-harness, which serves the same API code
# over a registry mirror without presence/engine/agent. FLEET_API_IMPL=daemon|harness forces
# one. Every process started here is recorded and killed by PID on exit.
. "$(dirname "$0")/../lib/testlib.sh"

T=$(mktemp -d /tmp/fleet-api.XXXXXX)
PIDS=()
SD_STARTED=
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
	[ -n "$SD_STARTED" ] && sd_stop >/dev/null 2>&1
	rm -rf "$T"
}
trap cleanup EXIT

ETCD=${FLEET_TEST_ETCD:-}
ETCD1=${ETCD%%,*}
HARNESS=$FLEET_BUILD/test/api-harness
SOCK=$T/api.sock
PREFIX=/fleet-test-api/$$/
LIMIT=2
IMPL=
SELF_ID=
SUBSTATE=

if [ -z "$ETCD" ]; then
	t_skip api "no etcd (FLEET_TEST_ETCD unset)"
	exit 0
fi
for tool in curl jq python3; do
	command -v $tool >/dev/null || { t_skip api "$tool not installed"; exit 0; }
done

# ---- etcd ----
ek() { echo "${PREFIX}$1"; }
etcd_put() { # KEY VALUE [TTL]
	curl -fs --max-time 3 -XPUT "$ETCD1/v2/keys$(ek "$1")" --data-urlencode "value=$2" ${3:+-d ttl=$3} >/dev/null
}
etcd_get() { curl -fs --max-time 3 "$ETCD1/v2/keys$(ek "$1")" | jq -r .node.value; }
etcd_has() { curl -fs --max-time 3 "$ETCD1/v2/keys$(ek "$1")" >/dev/null; }
etcd_rm() { curl -fs --max-time 3 -XDELETE "$ETCD1/v2/keys$(ek "$1")?recursive=true" >/dev/null; }
# Every leaf key and value under the prefix, one per line: the "nothing was written" oracle.
etcd_dump() {
	curl -fs --max-time 3 "$ETCD1/v2/keys${PREFIX%/}?recursive=true&sorted=true" |
		jq -r '[.. | objects | select(has("key") and (has("dir") | not)) | "\(.key)=\(.value)"] | sort | .[]' 2>/dev/null
}

# ---- HTTP ----
# req METHOD PATH [BODY [CURL ARGS...]]: sets CODE, BODY, HDRS. A BODY of "-" means none.
req() {
	local m=$1 p=$2 b=${3:--} out
	shift 3 2>/dev/null || shift $#
	local data=()
	[ "$b" != - ] && data=(--data-binary "$b")
	out=$(curl -s --max-time 10 --unix-socket "$SOCK" -X "$m" -D "$T/hdrs" -o "$T/body" -w '%{http_code}' \
		"${data[@]}" "$@" "http://fleet$p")
	CODE=$out
	BODY=$(cat "$T/body")
	HDRS=$(tr -d '\r' <"$T/hdrs")
}
put_json() { req PUT "$1" "$2" -H 'Content-Type: application/json'; }
header() { grep -i "^$1:" <<<"$HDRS" | head -1 | sed 's/^[^:]*: *//'; }
err_json() { printf '{"error":{"code":%s,"message":"%s"}}' "$1" "$2"; }

# expect CODE [BODY]: the last response
expect() {
	if [ "$CODE" != "$1" ]; then
		echo "status: got $CODE, want $1 (body: $BODY)"
		return 1
	fi
	[ $# -lt 2 ] || expect_eq "body" "$BODY" "$2"
}
expect_err() { expect "$1" "$(err_json "$1" "$2")"; }

# chunked PIECE...: a chunked body (for raw), with a chunk extension on the first chunk.
chunked() {
	local p ext=";x=1"
	for p in "$@"; do
		printf '%x%s\\r\\n%s\\r\\n' ${#p} "$ext" "$p"
		ext=
	done
	printf '0\\r\\n\\r\\n'
}

# Raw bytes to the socket (printf escapes), prints what comes back until EOF or 5 s.
raw() {
	python3 - "$SOCK" "$1" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(sys.argv[2].encode().decode('unicode_escape').encode('latin1'))
s.settimeout(5)
out = b''
while True:
    try:
        d = s.recv(65536)
    except socket.timeout:
        out += b'<timeout>'
        break
    if not d:
        out += b'<eof>'
        break
    out += d
sys.stdout.write(out.decode('latin1').replace('\r', ''))
EOF
}

HELLO_OPTS='[{"section":"Service","name":"ExecStart","value":"/bin/bash -c \"while true; do echo Hello, World!; sleep 1; done\""}]'
HELLO_HASH=3750b3e9f3962a56c7582929426e9abb012754cf
opts() { printf '[{"section":"Service","name":"ExecStart","value":"%s"}]' "$1"; }

# unchanged CMD...: runs CMD (a request helper) and checks it wrote nothing to etcd.
unchanged() {
	local before after
	before=$(etcd_dump)
	"$@" || return 1
	after=$(etcd_dump)
	if [ "$before" != "$after" ]; then
		echo "etcd changed by: $*"
		diff <(echo "$before") <(echo "$after")
		return 1
	fi
}

# ---- the server under test ----
start_harness() {
	[ -x "$HARNESS" ] || return 1
	rm -f "$SOCK"
	"$HARNESS" --etcd "$ETCD" --prefix "$PREFIX" --socket "$SOCK" --token-limit $LIMIT "$@" \
		>"$T/harness.log" 2>&1 </dev/null &
	PIDS+=($!)
	HARNESS_PID=$!
	wait_until 10 grep -q ready "$T/harness.log"
}

start_daemon() { # [EXTRA CONFIG LINES...]
	SELF_ID=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
	echo "$SELF_ID" >"$T/machine-id"
	mkdir -p "$T/units"
	{
		echo "etcd_servers=$ETCD"
		echo "etcd_key_prefix=$PREFIX"
		echo "agent_ttl=3s"
		echo "public_ip=10.9.9.9"
		echo "token_limit=$LIMIT"
		echo "disable_engine=true"
		echo "api_listen=unix:$SOCK"
		echo "units_directory=$T/units/"
		echo "systemd_user=true"
		printf '%s\n' "$@"
	} >"$T/fleet.conf"
	rm -f "$SOCK"
	FLEET_MACHINE_ID_FILE=$T/machine-id "$FLEET_BIN" daemon -config "$T/fleet.conf" >"$T/daemon.log" 2>&1 </dev/null &
	PIDS+=($!)
	DAEMON_PID=$!
}

api_up() { req GET /fleet/v1/units; [ "$CODE" = 200 ]; }

choose_impl() {
	local want=${FLEET_API_IMPL:-auto}
	if [ "$want" != harness ] && [ -x "$FLEET_BIN" ] && [ -f "$TL_TOP/test/lib/systemd.sh" ]; then
		# shellcheck source=../lib/systemd.sh
		. "$TL_TOP/test/lib/systemd.sh"
		if sd_start "api$$"; then
			SD_STARTED=1
		else
			echo "no systemd --user for the daemon's agent: $SD_WHY" >&2
		fi
	fi
	if [ "$want" != harness ] && [ -x "$FLEET_BIN" ] && [ -n "$SD_STARTED" ]; then
		start_daemon
		if wait_until 15 api_up; then
			IMPL=daemon
			return 0
		fi
		kill "$DAEMON_PID" 2>/dev/null; wait "$DAEMON_PID" 2>/dev/null
		echo "fleet daemon did not serve the API here; using the harness" >&2
		tail -5 "$T/daemon.log" >&2
		[ "$want" = daemon ] && return 1
	fi
	etcd_rm ""
	start_harness && wait_until 10 api_up && IMPL=harness
}

# Machines other than the ones a case writes (the daemon's own).
self_machines() { [ "$IMPL" = daemon ] && echo 1 || echo 0; }

# ---- cases ----

c_unavailable() {
	local pid
	if [ "$IMPL" = harness ]; then
		# a second harness that is not registered yet
		local sock2=$T/unreg.sock
		"$HARNESS" --etcd "$ETCD" --prefix "$PREFIX" --socket "$sock2" --unregistered >"$T/unreg.log" 2>&1 </dev/null &
		pid=$!
		PIDS+=($pid)
		wait_until 10 grep -q ready "$T/unreg.log" || return 1
		local save=$SOCK
		SOCK=$sock2
		for p in /fleet/v1/units /fleet/v1/machines /fleet/v1/state /fleet/v1/discovery /metrics /nope; do
			req GET $p
			expect_err 503 "fleet server unable to communicate with etcd" || { SOCK=$save; return 1; }
		done
		expect_eq server "$(header Server)" "fleetd/1.0.0" || { SOCK=$save; return 1; }
		unchanged put_json /fleet/v1/units/x.service "{\"options\":$HELLO_OPTS}" || { SOCK=$save; return 1; }
		expect 503 || { SOCK=$save; return 1; }
		kill -USR1 $pid
		wait_until 5 api_up || { SOCK=$save; return 1; }
		kill -USR2 $pid
		wait_until 5 eval 'req GET /fleet/v1/units; [ "$CODE" = 503 ]' || { SOCK=$save; return 1; }
		SOCK=$save
		kill $pid
		return 0
	fi
	# daemon: our machine ID is already registered by someone else (a key with a TTL), so
	# registration fails and the API answers 503 until the key expires.
	kill "$DAEMON_PID"; wait "$DAEMON_PID" 2>/dev/null
	etcd_put "machines/$SELF_ID/object" "{\"ID\":\"$SELF_ID\",\"PublicIP\":\"\",\"Metadata\":{},\"Capabilities\":{\"DISABLE_ENGINE\":false,\"GRPC\":false},\"Version\":\"1.0.0\"}" 4 || return 1
	echo "$SELF_ID" >"$T/machine-id"
	rm -f "$SOCK"
	FLEET_MACHINE_ID_FILE=$T/machine-id "$FLEET_BIN" daemon -config "$T/fleet.conf" >"$T/daemon.log" 2>&1 </dev/null &
	PIDS+=($!)
	DAEMON_PID=$!
	wait_until 10 test -S "$SOCK" || return 1
	req GET /fleet/v1/units
	expect_err 503 "fleet server unable to communicate with etcd" || return 1
	expect_eq server "$(header Server)" "fleetd/1.0.0" || return 1
	wait_until 30 api_up
}

c_routing() {
	req GET /
	expect 405 || return 1
	for p in /fleet/v1 /v1-alpha; do
		req GET $p
		expect 405 || return 1
	done
	for p in /nope /fleet/v1/nope /fleet/v1/units/ /fleet/v1/state/ /fleet/v1/machines/ /fleet/v1/machines/abc \
		/fleet/v1/units/a%2Fb.service /fleet/v1/units/a/b /fleet/v1x/units /fleet/v1/discovery/x; do
		req GET "$p"
		expect 404 || { echo "path $p"; return 1; }
	done
	req POST /fleet/v1/units '{}'
	expect_err 405 "only GET supported against this resource" || return 1
	req DELETE /fleet/v1/state
	expect_err 405 "only GET supported against this resource" || return 1
	req PUT /fleet/v1/state/x.service '{}'
	expect_err 405 "only GET supported against this resource" || return 1
	req POST /fleet/v1/units/x.service '{}'
	expect_err 405 "only GET, PUT and DELETE supported against this resource" || return 1
	req PUT /fleet/v1/machines '{}'
	expect_err 405 "only GET and PATCH supported against this resource" || return 1
	req DELETE /fleet/v1/discovery
	expect_err 400 "only HTTP GET supported against this resource" || return 1
	req GET /fleet/v1/units
	expect 200 || return 1
	expect_eq server "$(header Server)" "fleetd/1.0.0" || return 1
	expect_eq ctype "$(header Content-Type)" "application/json" || return 1
	req GET '/v1-alpha/units?alt=json'
	expect 200 || return 1
}

c_discovery() {
	local p
	for p in /fleet/v1/discovery /v1-alpha/discovery; do
		req GET $p
		expect 200 || return 1
		expect_eq ctype "$(header Content-Type)" "application/json" || return 1
		jq -e '.kind == "discovery#restDescription" and .schemas.Unit and .resources.Units.methods.Set' \
			<<<"$BODY" >/dev/null || { echo "bad discovery document"; return 1; }
	done
}

c_empty_collections() {
	local p
	for p in units state machines; do
		req GET /fleet/v1/$p
		if [ $p = machines ] && [ "$IMPL" = daemon ]; then
			expect 200 || return 1
			continue
		fi
		expect 200 "{}" || { echo "collection $p"; return 1; }
	done
}

c_create_unit() {
	local want hash obj
	put_json /fleet/v1/units/hello.service "{\"name\":\"hello.service\",\"options\":$HELLO_OPTS}"
	expect 201 "" || return 1
	req GET /fleet/v1/units/hello.service
	want='{"currentState":"inactive","desiredState":"inactive","name":"hello.service","options":[{"name":"ExecStart","section":"Service","value":"/bin/bash -c \"while true; do echo Hello, World!; sleep 1; done\""}]}'
	expect 200 "$want" || return 1
	# the raw registry, byte-compatible with fleet
	expect_eq target-state "$(etcd_get job/hello.service/target-state)" inactive || return 1
	obj=$(etcd_get job/hello.service/object)
	hash=$(jq -r '.UnitHash | map(. + 256 | tostring) | join(",")' <<<"$obj" |
		python3 -c 'import sys; print("".join("%02x" % (int(x) - 256) for x in sys.stdin.read().strip().split(",")))')
	expect_eq hash "$hash" "$HELLO_HASH" || return 1
	expect_eq object-name "$(jq -r .Name <<<"$obj")" hello.service || return 1
	expect_eq raw "$(etcd_get unit/$HELLO_HASH | jq -r .Raw)" \
		"$(printf '[Service]\nExecStart=/bin/bash -c "while true; do echo Hello, World!; sleep 1; done"')" || return 1
	# the name may be left out of the body; desiredState applies on creation; < > & escaped as Go does
	put_json /fleet/v1/units/web.service "{\"desiredState\":\"launched\",\"options\":$(opts '/bin/true <a> & b')}"
	expect 201 || return 1
	expect_eq target-state "$(etcd_get job/web.service/target-state)" launched || return 1
	req GET /fleet/v1/units/web.service
	expect 200 '{"currentState":"inactive","desiredState":"launched","name":"web.service","options":[{"name":"ExecStart","section":"Service","value":"/bin/true \u003ca\u003e \u0026 b"}]}'
}

c_put_errors() {
	# 1. Content-Type
	unchanged req PUT /fleet/v1/units/new.service "{\"options\":$HELLO_OPTS}" -H 'Content-Type:' || return 1
	expect_err 415 "expected 1 Content-Type, got 0" || return 1
	unchanged req PUT /fleet/v1/units/new.service "{\"options\":$HELLO_OPTS}" -H 'Content-Type: application/json' \
		-H 'Content-Type: application/json' -H 'X: y' || return 1
	expect_err 415 "expected 1 Content-Type, got 2" || return 1
	unchanged req PUT /fleet/v1/units/new.service "{\"options\":$HELLO_OPTS}" -H 'Content-Type: text/plain' || return 1
	expect_err 415 "only acceptable Content-Type is application/json" || return 1
	# 2. body
	unchanged put_json /fleet/v1/units/new.service '{"options":' || return 1
	expect 400 || return 1
	case $BODY in *'"message":"unable to decode body: '*) ;; *) echo "$BODY"; return 1 ;; esac
	unchanged put_json /fleet/v1/units/new.service '' || return 1
	expect_err 400 "unable to decode body: EOF" || return 1
	for b in '{"name":5}' '{"options":"x"}' '{"options":[5]}' '{"options":[{"value":true}]}' '[1]' \
		'{"desiredState":{}}' '{"options":[]} trailing' '{"name":"a\u0000.service"}'; do
		unchanged put_json /fleet/v1/units/new.service "$b" || return 1
		expect 400 || { echo "body $b"; return 1; }
	done
	# an escaped backslash before "u0000" is no NUL escape: the text arrives as it is
	put_json /fleet/v1/units/bs.service "{\"options\":$(opts 'printf \\u0000')}"
	expect 201 "" || return 1
	req GET /fleet/v1/units/bs.service
	expect 200 || return 1
	expect_eq value "$(jq -r '.options[0].value' <<<"$BODY")" 'printf \u0000' || return 1
	req DELETE /fleet/v1/units/bs.service
	expect 204 "" || return 1
	# 3. name
	unchanged put_json /fleet/v1/units/a.service "{\"name\":\"b.service\",\"options\":$HELLO_OPTS}" || return 1
	expect_err 400 'name in URL \"a.service\" differs from unit name in request body \"b.service\"' || return 1
	# 4. name validation, fleet's messages
	unchanged put_json /fleet/v1/units/foo "{\"options\":$HELLO_OPTS}" || return 1
	expect_err 400 'unit name must contain \".\"' || return 1
	unchanged put_json /fleet/v1/units/foo.bar "{\"options\":$HELLO_OPTS}" || return 1
	expect_err 400 'invalid unit type: \"bar\"' || return 1
	unchanged put_json /fleet/v1/units/foo. "{\"options\":$HELLO_OPTS}" || return 1
	expect_err 400 'unit name cannot end in \".\"' || return 1
	unchanged put_json /fleet/v1/units/@foo.service "{\"options\":$HELLO_OPTS}" || return 1
	expect_err 400 'unit name cannot start in \"@\"' || return 1
	unchanged put_json '/fleet/v1/units/f%24o.service' "{\"options\":$HELLO_OPTS}" || return 1
	expect_err 400 "invalid character '\$' in unit name" || return 1
	# 6. new unit without options; invalid options
	unchanged put_json /fleet/v1/units/new.service '{"desiredState":"launched"}' || return 1
	expect_err 409 "unit does not exist and options field empty" || return 1
	unchanged put_json /fleet/v1/units/new.service '{"options":[]}' || return 1
	expect_err 409 "unit does not exist and options field empty" || return 1
	unchanged put_json /fleet/v1/units/new.service \
		'{"options":[{"section":"X-Fleet","name":"MachineID","value":"abc"},{"section":"X-Fleet","name":"Global","value":"true"}]}' || return 1
	expect_err 400 "MachineID cannot be used with Global" || return 1
	unchanged put_json /fleet/v1/units/new.service \
		'{"options":[{"section":"X-Fleet","name":"MachineOf","value":"b.service"},{"section":"X-Fleet","name":"Conflicts","value":"b.*"}]}' || return 1
	expect_err 400 'unresolvable requirements: peer \"b.service\" matches conflict \"b.*\"' || return 1
	# a bogus desiredState is refused before anything is written (fleet would 500 or store it)
	unchanged put_json /fleet/v1/units/new.service "{\"desiredState\":\"running\",\"options\":$HELLO_OPTS}" || return 1
	expect 400 || return 1
	unchanged put_json /fleet/v1/units/hello.service '{"desiredState":"bogus"}' || return 1
	expect 400 || return 1
	# 8. existing unit, no desiredState
	unchanged put_json /fleet/v1/units/hello.service '{}' || return 1
	expect_err 409 "must provide DesiredState to update existing unit" || return 1
	unchanged put_json /fleet/v1/units/hello.service "{\"options\":$HELLO_OPTS}" || return 1
	expect_err 409 "must provide DesiredState to update existing unit" || return 1
	# oversize body
	head -c 1100000 /dev/zero | tr '\0' ' ' >"$T/big"
	unchanged req PUT /fleet/v1/units/new.service "@$T/big" -H 'Content-Type: application/json' || return 1
	expect 413 || return 1
}

c_put_states() {
	local obj
	obj=$(etcd_get job/hello.service/object)
	put_json /fleet/v1/units/hello.service '{"desiredState":"loaded"}'
	expect 204 "" || return 1
	expect_eq ts "$(etcd_get job/hello.service/target-state)" loaded || return 1
	# identical options + desiredState: only the state changes
	put_json /fleet/v1/units/hello.service "{\"desiredState\":\"launched\",\"options\":$HELLO_OPTS}"
	expect 204 || return 1
	expect_eq ts "$(etcd_get job/hello.service/target-state)" launched || return 1
	expect_eq object "$(etcd_get job/hello.service/object)" "$obj" || return 1
	# different options replace the unit, target state back to the body's (or inactive)
	put_json /fleet/v1/units/hello.service "{\"options\":$(opts /bin/sleep 1)}"
	expect 201 || return 1
	expect_eq ts "$(etcd_get job/hello.service/target-state)" inactive || return 1
	[ "$(etcd_get job/hello.service/object)" != "$obj" ] || { echo "object not replaced"; return 1; }
	req GET /fleet/v1/units/hello.service
	expect 200 '{"currentState":"inactive","desiredState":"inactive","name":"hello.service","options":[{"name":"ExecStart","section":"Service","value":"/bin/sleep"}]}' || return 1
	put_json /fleet/v1/units/hello.service "{\"desiredState\":\"loaded\",\"options\":$HELLO_OPTS}"
	expect 201 || return 1
	expect_eq ts "$(etcd_get job/hello.service/target-state)" loaded || return 1
	# templates cannot be activated, only kept inactive
	put_json /fleet/v1/units/tmpl@.service "{\"options\":$(opts /bin/true)}"
	expect 201 || return 1
	unchanged put_json /fleet/v1/units/tmpl@.service '{"desiredState":"launched"}' || return 1
	expect_err 400 'cannot activate template \"tmpl@.service\"' || return 1
	put_json /fleet/v1/units/tmpl@.service '{"desiredState":"inactive"}'
	expect 204 || return 1
	# an instance is fine, and %40 in the path is '@'
	put_json /fleet/v1/units/tmpl%401.service "{\"desiredState\":\"loaded\",\"options\":$(opts /bin/true)}"
	expect 201 || return 1
	expect_eq ts "$(etcd_get job/tmpl@1.service/target-state)" loaded
}

c_read_your_writes() {
	local s i
	for i in $(seq 1 10); do
		for s in loaded launched inactive; do
			put_json /fleet/v1/units/hello.service "{\"desiredState\":\"$s\"}"
			expect 204 || return 1
			req GET /fleet/v1/units/hello.service
			expect 200 || return 1
			expect_eq "round $i" "$(jq -r .desiredState <<<"$BODY")" "$s" || return 1
		done
	done
	put_json /fleet/v1/units/ryw.service "{\"options\":$(opts /bin/true)}"
	expect 201 || return 1
	req GET /fleet/v1/units/ryw.service
	expect 200 || return 1
	req DELETE /fleet/v1/units/ryw.service
	expect 204 || return 1
	req GET /fleet/v1/units/ryw.service
	expect_err 404 "unit does not exist"
}

c_current_state() {
	put_json /fleet/v1/units/sched.service "{\"desiredState\":\"launched\",\"options\":$(opts /bin/true)}"
	expect 201 || return 1
	etcd_put job/sched.service/target m1 || return 1
	# scheduled but no state reported by m1: still inactive
	wait_until 5 eval 'req GET /fleet/v1/units/sched.service; [ "$(jq -r .machineID <<<"$BODY")" = m1 ]' || return 1
	expect 200 '{"currentState":"inactive","desiredState":"launched","machineID":"m1","name":"sched.service","options":[{"name":"ExecStart","section":"Service","value":"/bin/true"}]}' || return 1
	etcd_put states/sched.service/m1 '{"loadState":"loaded","activeState":"active","subState":"running","machineState":{"ID":"m1","PublicIP":"","Metadata":null,"Capabilities":null,"Version":""},"unitHash":"x"}' || return 1
	wait_until 5 eval 'req GET /fleet/v1/units/sched.service; [ "$(jq -r .currentState <<<"$BODY")" = loaded ]' || { echo "$BODY"; return 1; }
	etcd_put job/sched.service/job-state m1 || return 1
	wait_until 5 eval 'req GET /fleet/v1/units/sched.service; [ "$(jq -r .currentState <<<"$BODY")" = launched ]' || { echo "$BODY"; return 1; }
	# our extension: why the engine could not place a unit
	etcd_put job/sched.service/unschedulable "no machine matches MachineMetadata region=mars" || return 1
	wait_until 5 eval 'req GET /fleet/v1/units/sched.service; [ "$(jq -r .unschedulableReason <<<"$BODY")" != null ]' || { echo "$BODY"; return 1; }
	expect_eq reason "$(jq -r '.unschedulableReason' <<<"$BODY")" "no machine matches MachineMetadata region=mars" || return 1
	expect_eq last-field "$(jq -r 'keys_unsorted | last' <<<"$BODY")" unschedulableReason || return 1
	etcd_rm job/sched.service/unschedulable
	# global units: no currentState on a single GET, "inactive" in the collection
	put_json /fleet/v1/units/glob.service '{"options":[{"section":"Service","name":"ExecStart","value":"/bin/true"},{"section":"X-Fleet","name":"Global","value":"true"}]}'
	expect 201 || return 1
	req GET /fleet/v1/units/glob.service
	expect 200 '{"desiredState":"inactive","name":"glob.service","options":[{"name":"ExecStart","section":"Service","value":"/bin/true"},{"name":"Global","section":"X-Fleet","value":"true"}]}' || return 1
	all_units >"$T/all" || return 1
	expect_eq collection "$(jq -c 'select(.name == "glob.service") | .currentState' "$T/all")" '"inactive"'
}

# Follows nextPageToken through /fleet/v1/units; prints one unit per line.
all_units() {
	local tok= pages=0
	while :; do
		req GET "/fleet/v1/units${tok:+?nextPageToken=$tok}"
		[ "$CODE" = 200 ] || { echo "page $pages: $CODE $BODY" >&2; return 1; }
		jq -c '.units // [] | .[]' <<<"$BODY"
		tok=$(jq -r '.nextPageToken // empty' <<<"$BODY")
		pages=$((pages + 1))
		[ -n "$tok" ] || break
		[ $pages -lt 100 ] || return 1
	done
}

c_pagination() {
	local names n tok
	names=$(all_units | jq -r .name) || return 1
	expect_eq sorted "$names" "$(sort <<<"$names")" || return 1
	n=$(wc -l <<<"$names")
	[ "$n" -ge 5 ] || { echo "only $n units"; return 1; }
	# page 1 of limit 2: two units and the token of page 2 (limit 2, page 2 little-endian)
	req GET /fleet/v1/units
	expect 200 || return 1
	expect_eq count "$(jq '.units | length' <<<"$BODY")" 2 || return 1
	expect_eq token "$(jq -r .nextPageToken <<<"$BODY")" "AgACAA==" || return 1
	expect_eq first-key "$(jq -r 'keys_unsorted[0]' <<<"$BODY")" nextPageToken || return 1
	# an exactly full last page is followed by an empty page without a token
	if [ $((n % 2)) -eq 1 ]; then
		put_json /fleet/v1/units/zzz-even.service "{\"options\":$(opts /bin/true)}"
		expect 201 || return 1
		n=$((n + 1))
	fi
	tok=$(python3 -c "import base64,struct,sys; print(base64.urlsafe_b64encode(struct.pack('<HH', 2, int(sys.argv[1]))).decode())" $((n / 2)))
	req GET "/fleet/v1/units?nextPageToken=$tok"
	expect 200 || return 1
	expect_eq full-last "$(jq '.units | length' <<<"$BODY")" 2 || return 1
	tok=$(jq -r .nextPageToken <<<"$BODY")
	req GET "/fleet/v1/units?nextPageToken=$tok"
	expect 200 "{}" || return 1
	# bad tokens
	unchanged req GET '/fleet/v1/units?nextPageToken=AgACAA==&nextPageToken=AgACAA==' || return 1
	expect_err 400 "too many values for page token" || return 1
	req GET '/fleet/v1/units?nextPageToken=EwBMLg=='
	expect_err 400 "token limit must be 2" || return 1
	req GET '/fleet/v1/units?nextPageToken=AgAAAA=='
	expect_err 400 "token page must be greater than zero" || return 1
	req GET '/fleet/v1/units?nextPageToken=!!!!'
	expect_err 400 "illegal base64 data at input byte 0" || return 1
	req GET '/fleet/v1/units?nextPageToken='
	expect_err 400 "EOF" || return 1
	req GET '/fleet/v1/units?nextPageToken=AgA='
	expect_err 400 "unexpected EOF" || return 1
	# Go's offsets: a short last quantum at its start, data after the padding where it starts
	req GET '/fleet/v1/units?nextPageToken=ZAACAA'
	expect_err 400 "illegal base64 data at input byte 4" || return 1
	req GET '/fleet/v1/units?nextPageToken=ZAACAA%3D%3DZAAC'
	expect_err 400 "illegal base64 data at input byte 8" || return 1
	for p in state machines; do
		req GET "/fleet/v1/$p?nextPageToken=EwBMLg=="
		expect_err 400 "token limit must be 2" || return 1
	done
}

# Partial responses (Google's fields parameter; fleet ignored it): a simple selection of unit
# fields is honoured, anything else answered in full; paging is the same either way.
c_fields() {
	local full q
	req GET /fleet/v1/units; expect 200 || return 1
	full=$BODY
	req GET '/fleet/v1/units?fields=nextPageToken,units/name'; expect 200 || return 1
	expect_eq names "$BODY" "$(jq -c '{nextPageToken, units: [.units[] | {name}]}' <<<"$full")" || return 1
	req GET '/fleet/v1/units?fields=units(name,desiredState)'; expect 200 || return 1
	expect_eq "two fields" "$BODY" "$(jq -c '{nextPageToken, units: [.units[] | {desiredState, name}]}' <<<"$full")" || return 1
	req GET '/fleet/v1/units?fields=units%28name%29&nextPageToken=AgACAA=='; expect 200 || return 1
	expect_eq "escaped, page 2" "$(jq -c '[.units[] | keys]' <<<"$BODY")" '[["name"],["name"]]' || return 1
	for q in units/bogus 'units(name' items/name nextPageToken 'units/name&fields=units/options' ''; do
		req GET "/fleet/v1/units?fields=$q"; expect 200 "$full" || { echo "fields=$q"; return 1; }
	done
}

state_value() { # MACHINE ACTIVE SUB HASH
	printf '{"loadState":"loaded","activeState":"%s","subState":"%s","machineState":{"ID":"%s","PublicIP":"","Metadata":null,"Capabilities":null,"Version":""},"unitHash":"%s"}' "$2" "$3" "$1" "$4"
}

c_state() {
	local h=0123456789abcdef0123456789abcdef01234567
	etcd_put states/b.service/m2 "$(state_value m2 active running $h)" || return 1
	etcd_put states/b.service/m1 "$(state_value m1 failed failed $h)" || return 1
	etcd_put states/a.service/m2 "$(state_value m2 inactive dead "")" || return 1
	wait_until 5 eval 'req GET "/fleet/v1/state?unitName=a.service"; [ "$(jq ".states | length" <<<"$BODY")" = 1 ]' || { echo "$BODY"; return 1; }
	expect 200 '{"states":[{"machineID":"m2","name":"a.service","systemdActiveState":"inactive","systemdLoadState":"loaded","systemdSubState":"dead"}]}' || return 1
	# exactly token_limit (2) states: a full page, so fleet adds a token for an empty next page
	req GET "/fleet/v1/state?unitName=b.service"
	expect 200 "{\"nextPageToken\":\"AgACAA==\",\"states\":[{\"hash\":\"$h\",\"machineID\":\"m1\",\"name\":\"b.service\",\"systemdActiveState\":\"failed\",\"systemdLoadState\":\"loaded\",\"systemdSubState\":\"failed\"},{\"hash\":\"$h\",\"machineID\":\"m2\",\"name\":\"b.service\",\"systemdActiveState\":\"active\",\"systemdLoadState\":\"loaded\",\"systemdSubState\":\"running\"}]}" || return 1
	req GET "/fleet/v1/state?machineID=m2&unitName=b.service&unitName=a.service"
	expect 200 || return 1
	expect_eq filtered "$(jq -c '[.states[] | [.name, .machineID]]' <<<"$BODY")" '[["b.service","m2"]]' || return 1
	req GET "/fleet/v1/state?machineID=m2"
	expect_eq by-machine "$(jq -c '[.states[] | .name]' <<<"$BODY")" '["a.service","b.service"]' || return 1
	req GET "/fleet/v1/state?machineID=nope"
	expect 200 "{}" || return 1
	# sorted by (name, machine), paged: a/m2 b/m1 | b/m2 (+ sched.service/m1 from another case)
	req GET "/fleet/v1/state"
	expect_eq page1 "$(jq -c '[.states[] | [.name, .machineID]]' <<<"$BODY")" '[["a.service","m2"],["b.service","m1"]]' || return 1
	expect_eq token "$(jq -r .nextPageToken <<<"$BODY")" AgACAA== || return 1
	req GET "/fleet/v1/state?nextPageToken=AgACAA=="
	expect_eq page2 "$(jq -c '.states[0] | [.name, .machineID]' <<<"$BODY")" '["b.service","m2"]' || return 1
	# single state: the first machine's; none: 404 (fleet v1.0.0 drops the connection)
	req GET /fleet/v1/state/b.service
	expect 200 "{\"hash\":\"$h\",\"machineID\":\"m1\",\"name\":\"b.service\",\"systemdActiveState\":\"failed\",\"systemdLoadState\":\"loaded\",\"systemdSubState\":\"failed\"}" || return 1
	req GET /fleet/v1/state/none.service
	expect_err 404 "unit state does not exist"
}

machine_value() { # ID IP METADATA-JSON
	printf '{"ID":"%s","PublicIP":"%s","Metadata":%s,"Capabilities":{"DISABLE_ENGINE":false,"GRPC":false},"Version":"1.0.0"}' "$1" "$2" "$3"
}

# The machines of the last GET /machines without the daemon's own.
mine() { jq -c --arg self "$SELF_ID" '[.machines // [] | .[] | select(.id != $self)]' <<<"$BODY"; }

c_machines() {
	local all
	etcd_put machines/mb/object "$(machine_value mb 10.0.0.2 '{"region":"us","az":"1"}')" || return 1
	etcd_put machines/ma/object "$(machine_value ma 10.0.0.1 '{}')" || return 1
	etcd_put machines/mc/object "$(machine_value mc '' '{"x":"<&>"}')" || return 1
	wait_until 5 eval 'req GET "/fleet/v1/machines?nextPageToken=AgACAA=="; all_machines >"$T/m"; [ "$(jq -s length "$T/m")" -ge 3 ]' || return 1
	all=$(jq -c --arg self "$SELF_ID" 'select(.id != $self)' "$T/m" | jq -sc .)
	expect_eq machines "$all" '[{"id":"ma","primaryIP":"10.0.0.1"},{"id":"mb","metadata":{"az":"1","region":"us"},"primaryIP":"10.0.0.2"},{"id":"mc","metadata":{"x":"<&>"}}]' || return 1
	req GET /fleet/v1/machines
	expect_eq order "$(jq -r 'keys_unsorted | join(",")' <<<"$BODY")" "machines,nextPageToken" || return 1
	grep -qF '"x":"\u003c\u0026\u003e"' <<<"$(all_machines_raw)" || { echo "metadata not escaped like Go"; return 1; }
}

all_machines_raw() {
	local tok= out=
	while :; do
		req GET "/fleet/v1/machines${tok:+?nextPageToken=$tok}"
		out+=$BODY
		tok=$(jq -r '.nextPageToken // empty' <<<"$BODY")
		[ -n "$tok" ] || break
	done
	echo "$out"
}
all_machines() {
	local tok=
	while :; do
		req GET "/fleet/v1/machines${tok:+?nextPageToken=$tok}"
		[ "$CODE" = 200 ] || return 1
		jq -c '.machines // [] | .[]' <<<"$BODY"
		tok=$(jq -r '.nextPageToken // empty' <<<"$BODY")
		[ -n "$tok" ] || break
	done
}
machine_json() { all_machines | jq -c --arg id "$1" 'select(.id == $id)'; }

c_patch_machines() {
	req PATCH /fleet/v1/machines '[{"op":"add","path":"/mb/metadata/disk","value":{"value":"ssd"}},{"op":"replace","path":"/mb/metadata/region","value":{"value":"eu"}},{"op":"remove","path":"/mb/metadata/az"}]'
	expect 204 "" || return 1
	expect_eq ctype "$(header Content-Type)" "application/json" || return 1
	expect_eq disk "$(etcd_get machines/mb/metadata/disk)" ssd || return 1
	expect_eq removed "$(etcd_get machines/mb/metadata/az)" "" || return 1
	req GET /fleet/v1/machines
	expect_eq merged "$(machine_json mb)" '{"id":"mb","metadata":{"disk":"ssd","region":"eu"},"primaryIP":"10.0.0.2"}' || return 1
	# a machine that is not registered: the key is written and shows up when it comes
	req PATCH /fleet/v1/machines '[{"op":"add","path":"/mz/metadata/role","value":{"value":"db"}}]'
	expect 204 || return 1
	expect_eq mz "$(etcd_get machines/mz/metadata/role)" db || return 1
	etcd_put machines/mz/object "$(machine_value mz 10.0.0.9 '{"role":"web"}')" || return 1
	wait_until 5 eval '[ "$(machine_json mz)" = '"'"'{"id":"mz","metadata":{"role":"db"},"primaryIP":"10.0.0.9"}'"'"' ]' || { machine_json mz; return 1; }
	# errors: all operations are validated before the first write
	unchanged req PATCH /fleet/v1/machines '[{"op":"add","path":"/mb/metadata/k","value":{"value":"v"}},{"op":"move","path":"/mb/metadata/k"}]' || return 1
	expect_err 400 "invalid op: expect add, remove, or replace" || return 1
	for p in /mb/metadata/ /mb/meta/k "/mb/metadata/a b" /mb/metadata/k/x //metadata/k mb/metadata/k /../metadata/k; do
		unchanged req PATCH /fleet/v1/machines "[{\"op\":\"add\",\"path\":\"$p\",\"value\":{\"value\":\"v\"}}]" || return 1
		expect_err 400 "machine metadata path invalid" || { echo "path $p"; return 1; }
	done
	for v in '' ',"value":{"value":""}' ',"value":{}' ',"value":null'; do
		unchanged req PATCH /fleet/v1/machines "[{\"op\":\"replace\",\"path\":\"/mb/metadata/k\"$v}]" || return 1
		expect_err 400 "invalid value: add and replace require a value" || { echo "value $v"; return 1; }
	done
	for b in '' '[' '{"op":"add"}' '[{"op":5}]' '[{"op":"add","path":"/mb/metadata/k","value":"v"}]' '[1]'; do
		unchanged req PATCH /fleet/v1/machines "$b" || return 1
		expect 400 || { echo "body $b"; return 1; }
	done
	req PATCH /fleet/v1/machines '[]'
	expect 204
}

c_delete() {
	req DELETE /fleet/v1/units/web.service
	expect 204 "" || return 1
	etcd_has job/web.service && { echo "job dir left"; return 1; }
	req GET /fleet/v1/units/web.service
	expect_err 404 "unit does not exist" || return 1
	unchanged req DELETE /fleet/v1/units/web.service || return 1
	expect_err 404 "unit does not exist" || return 1
	unchanged req DELETE /fleet/v1/units/.. || return 1
	expect 404 || return 1
	unchanged req DELETE /fleet/v1/units/%2E%2E || return 1
	expect 404
}

c_metrics() {
	req GET /metrics
	expect 200 || return 1
	case $(header Content-Type) in text/plain*) ;; *) echo "ctype $(header Content-Type)"; return 1 ;; esac
	for m in fleet_api_requests_total fleet_api_responses_total fleet_registry_operation_count_total \
		fleet_units fleet_machines; do
		grep -q "^$m" <<<"$BODY" || { echo "no $m"; return 1; }
	done
	expect_eq 4xx-counted "$(grep -c 'fleet_api_responses_total{code="4xx"} [1-9]' <<<"$BODY")" 1
}

c_http_raw() {
	local out
	# garbage: 400 with the JSON error entity, then the connection closes
	out=$(raw 'GARBAGE\r\n\r\n')
	case $out in "HTTP/1.1 400 Bad Request"*'{"error":{"code":400,"message":"malformed request line"}}<eof>') ;;
	*) echo "$out"; return 1 ;; esac
	grep -q '^Server: fleetd/1.0.0$' <<<"$out" || return 1
	out=$(raw 'GET /fleet/v1/units HTTP/1.1\r\n\r\n')
	case $out in "HTTP/1.1 400 "*'<eof>') ;; *) echo "no Host: $out"; return 1 ;; esac
	# pipelining and keep-alive: two requests, two answers in order, connection stays open
	out=$(raw 'GET /fleet/v1/units/hello.service HTTP/1.1\r\nHost: x\r\n\r\nGET /fleet/v1/units/none.service HTTP/1.1\r\nHost: x\r\n\r\n')
	case $out in "HTTP/1.1 200 OK"*"HTTP/1.1 404 Not Found"*'"unit does not exist"}}<timeout>') ;;
	*) echo "$out"; return 1 ;; esac
	# chunked PUT body, split in the middle of tokens
	out=$(raw "PUT /fleet/v1/units/chunk.service HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n$(chunked '{"opt' 'ions":[{"section":"Service","name":"A","val' 'ue":"b"}' ']}')")
	case $out in "HTTP/1.1 201 Created"*'<eof>') ;; *) echo "chunked: $out"; return 1 ;; esac
	req GET /fleet/v1/units/chunk.service
	expect 200 '{"currentState":"inactive","desiredState":"inactive","name":"chunk.service","options":[{"name":"A","section":"Service","value":"b"}]}' || return 1
	# bad chunked body: 400, nothing written
	unchanged eval "out=\$(raw 'PUT /fleet/v1/units/chunk2.service HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n')" || return 1
	case $out in "HTTP/1.1 400 "*'<eof>') ;; *) echo "bad chunk: $out"; return 1 ;; esac
	# oversize header section: 431
	out=$(raw "GET / HTTP/1.1\r\nHost: x\r\nX: $(head -c 17000 /dev/zero | tr '\0' a)\r\n\r\n")
	case $out in "HTTP/1.1 431 "*) ;; *) echo "big header: ${out:0:200}"; return 1 ;; esac
	# curl reuses one connection for several URLs
	out=$(curl -s --unix-socket "$SOCK" -w '%{num_connects}\n' -o /dev/null http://x/fleet/v1/units -o /dev/null http://x/fleet/v1/state -o /dev/null http://x/fleet/v1/machines)
	expect_eq connects "$(tr '\n' ' ' <<<"$out")" "1 0 0 "
}

c_escaped_names() {
	# %40 and friends decode; the body's name is compared with the decoded one
	put_json /fleet/v1/units/esc%40x.service "{\"name\":\"esc@x.service\",\"options\":$(opts /bin/true)}"
	expect 201 || return 1
	req GET /fleet/v1/units/esc@x.service
	expect 200 || return 1
	req GET /v1-alpha/units/esc%40x.service
	expect 200
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# extra_harness NAME ARGS...: another harness with extra listeners; waits for "ready" or exit.
extra_harness() {
	local name=$1; shift
	"$HARNESS" --etcd "$ETCD" --prefix "$PREFIX" --socket "$T/$name.sock" --token-limit $LIMIT "$@" \
		>"$T/$name.log" 2>&1 </dev/null &
	PIDS+=($!)
	eval "XPID_$name=$!"
	wait_until 10 eval "grep -qs ready '$T/$name.log' || ! kill -0 $! 2>/dev/null"
	grep -q ready "$T/$name.log"
}

c_listeners() {
	local p1 p2 p3 out
	[ -x "$HARNESS" ] || { echo "no harness"; return 1; }
	"$TL_TOP/test/lib/certs.sh" "$T/tls" >/dev/null || return 1
	# plain HTTP on a non-loopback address needs api_allow_insecure_tcp
	p1=$(free_port)
	extra_harness refuse --listen "tcp:0.0.0.0:$p1" && { echo "non-loopback plain HTTP accepted"; return 1; }
	grep -q "Refusing plain-HTTP API listener 'tcp:0.0.0.0:$p1'" "$T/refuse.log" || { cat "$T/refuse.log"; return 1; }
	extra_harness bogus --listen "udp:1.2.3.4:5" && return 1
	grep -q "Invalid api_listen entry 'udp:1.2.3.4:5'" "$T/bogus.log" || { cat "$T/bogus.log"; return 1; }
	# loopback plain HTTP and an extra unix socket
	extra_harness plain --listen "tcp:127.0.0.1:$p1" --listen "unix:$T/extra.sock" || { cat "$T/plain.log"; return 1; }
	out=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$p1/fleet/v1/units") || return 1
	expect_eq plain "$out" 200 || return 1
	out=$(curl -s -o /dev/null -w '%{http_code}' --unix-socket "$T/extra.sock" http://x/fleet/v1/units) || return 1
	expect_eq extra-unix "$out" 200 || return 1
	[ "$(stat -c %a "$T/extra.sock")" = 600 ] || { echo "socket mode $(stat -c %a "$T/extra.sock")"; return 1; }
	# TLS (any address is fine with TLS), then TLS with client certificates
	p2=$(free_port)
	extra_harness tls --listen "tcp:0.0.0.0:$p2" --tls-cert "$T/tls/server.crt" --tls-key "$T/tls/server.key" ||
		{ cat "$T/tls.log"; return 1; }
	out=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$T/tls/ca.crt" "https://127.0.0.1:$p2/fleet/v1/units") || return 1
	expect_eq tls "$out" 200 || return 1
	out=$(curl -s --max-time 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$p2/fleet/v1/units")
	[ "$out" != 200 ] || { echo "plain HTTP answered on the TLS port"; return 1; }
	p3=$(free_port)
	extra_harness mtls --listen "tcp:127.0.0.1:$p3" --tls-cert "$T/tls/server.crt" --tls-key "$T/tls/server.key" \
		--tls-ca "$T/tls/ca.crt" || { cat "$T/mtls.log"; return 1; }
	out=$(curl -s --max-time 5 -o /dev/null -w '%{http_code}' --cacert "$T/tls/ca.crt" "https://127.0.0.1:$p3/fleet/v1/units")
	[ "$out" != 200 ] || { echo "no client certificate accepted"; return 1; }
	out=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$T/tls/ca.crt" --cert "$T/tls/client.crt" \
		--key "$T/tls/client.key" "https://127.0.0.1:$p3/fleet/v1/units") || return 1
	expect_eq mtls "$out" 200 || return 1
	# keep-alive and a PUT over TLS
	local c=(-s --cacert "$T/tls/ca.crt" --cert "$T/tls/client.crt" --key "$T/tls/client.key" -o /dev/null
		-w '%{http_code} %{num_connects}\n')
	out=$(curl "${c[@]}" "https://127.0.0.1:$p3/fleet/v1/units" --next "${c[@]}" -X PUT \
		-H 'Content-Type: application/json' --data-binary "{\"options\":$(opts /bin/tls)}" \
		"https://127.0.0.1:$p3/fleet/v1/units/tls.service")
	expect_eq tls-keepalive "$(tr '\n' ' ' <<<"$out")" "200 1 201 0 " || return 1
	local pid
	for n in plain tls mtls; do
		pid=$(eval "echo \$XPID_$n")
		kill "$pid"
	done
}

choose_impl || { t_fail api-server "no API server could be started"; tail -20 "$T"/*.log >&2; exit 1; }
echo "# API served by: $IMPL" >&2

t_run api-unavailable-503 c_unavailable
t_run api-routing c_routing
t_run api-discovery c_discovery
t_run api-empty-collections c_empty_collections
t_run api-put-create c_create_unit
t_run api-put-errors c_put_errors
t_run api-put-states c_put_states
t_run api-read-your-writes c_read_your_writes
t_run api-current-state c_current_state
t_run api-pagination c_pagination
t_run api-fields c_fields
t_run api-state c_state
t_run api-machines c_machines
t_run api-patch-machines c_patch_machines
t_run api-delete c_delete
t_run api-escaped-names c_escaped_names
t_run api-http-raw c_http_raw
t_run api-metrics c_metrics
t_run api-listeners-tls c_listeners
exit $TL_FAILED
