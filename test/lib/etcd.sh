#!/usr/bin/env bash
# etcd.sh: real etcd servers for the tests (Debian's etcd-server, v2 API on).
#   test/lib/etcd.sh start NAME [MEMBERS] [tls]   -> prints the client endpoints (comma list)
#   test/lib/etcd.sh stop NAME
#   test/lib/etcd.sh kill-member NAME I            -> SIGKILL member I (1-based)
#   test/lib/etcd.sh leader NAME                   -> prints the 1-based index of the raft leader
# FLEET_ETCD_IPS="127.0.0.1 10.79.0.1" adds client listen addresses (test nodes).
# State lives in $FLEET_TEST_STATE (default /tmp/fleet-test); every PID started is recorded in
# $FLEET_TEST_STATE/NAME.pids and only those PIDs are ever signalled. With tls, certificates
# from test/lib/certs.sh are used and client certificates are required; NAME.env then also
# holds CA/CERT/KEY paths.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
STATE=${FLEET_TEST_STATE:-/tmp/fleet-test}
mkdir -p "$STATE"

# A free port pair below the ephemeral range (32768+), where nothing else binds.
free_base() {
	local used base i ok
	used=$(ss -Htan 2>/dev/null | awk '{print $4}' | sed 's/.*://' | sort -u)
	for _ in $(seq 200); do
		base=$((20000 + (RANDOM % 6000) * 2))
		ok=1
		for i in $(seq 0 $((2 * $1 - 1))); do
			grep -qx "$((base + i))" <<<"$used" && { ok=0; break; }
		done
		[ $ok = 1 ] && { echo $base; return; }
	done
	echo "no free port" >&2; return 1
}

start() {
	local name=$1 n=${2:-1} tls=${3:-} scheme=http base cluster="" eps="" i cp pp
	local data=$STATE/$name.data tlsargs=() curlargs=() unset_env=()
	stop "$name" 2>/dev/null || true
	rm -rf "$data"; mkdir -p "$data"
	if [ "$tls" = tls ]; then
		"$HERE/certs.sh" "$STATE/tls" >/dev/null
		scheme=https
		tlsargs=(--cert-file "$STATE/tls/server.crt" --key-file "$STATE/tls/server.key"
			--client-cert-auth --trusted-ca-file "$STATE/tls/ca.crt")
		curlargs=(--cacert "$STATE/tls/ca.crt" --cert "$STATE/tls/client.crt" --key "$STATE/tls/client.key")
	fi
	# etcd reads every ETCD_* variable as a flag; never pass any through.
	for v in $(compgen -e); do [[ $v == ETCD_* ]] && unset_env+=(-u "$v"); done
	base=$(free_base "$n")
	for i in $(seq 1 "$n"); do
		cluster="${cluster:+$cluster,}$name$i=http://127.0.0.1:$((base + 2 * (i - 1) + 1))"
	done
	: >"$STATE/$name.pids"
	for i in $(seq 1 "$n"); do
		cp=$((base + 2 * (i - 1))); pp=$((cp + 1))
		eps="${eps:+$eps,}$scheme://127.0.0.1:$cp"
		urls=""
		for ip in ${FLEET_ETCD_IPS:-127.0.0.1}; do urls="${urls:+$urls,}$scheme://$ip:$cp"; done
		env "${unset_env[@]}" etcd --name "$name$i" --data-dir "$data/$i" --enable-v2 \
			--listen-client-urls "$urls" --advertise-client-urls "$urls" \
			--listen-peer-urls "http://127.0.0.1:$pp" --initial-advertise-peer-urls "http://127.0.0.1:$pp" \
			--initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token "$name-$$" \
			--heartbeat-interval 50 --election-timeout 500 \
			"${tlsargs[@]}" >"$STATE/$name$i.log" 2>&1 &
		echo "$!" >>"$STATE/$name.pids"
	done
	for i in $(seq 1 "$n"); do
		cp=$((base + 2 * (i - 1)))
		for t in $(seq 100); do
			curl -fs --max-time 1 "${curlargs[@]}" "$scheme://127.0.0.1:$cp/health" 2>/dev/null | grep -q true && break
			[ "$t" = 100 ] && { echo "etcd $name$i did not become healthy" >&2; tail -5 "$STATE/$name$i.log" >&2; stop "$name"; return 1; }
			sleep 0.1
		done
	done
	{
		echo "ENDPOINTS=$eps"
		if [ "$tls" = tls ]; then
			echo "CAFILE=$STATE/tls/ca.crt"
			echo "CERTFILE=$STATE/tls/client.crt"
			echo "KEYFILE=$STATE/tls/client.key"
		fi
	} >"$STATE/$name.env"
	echo "$eps"
}

stop() {
	local name=$1 p
	[ -f "$STATE/$name.pids" ] || return 0
	while read -r p; do kill "$p" 2>/dev/null || true; done <"$STATE/$name.pids"
	while read -r p; do
		for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
		kill -9 "$p" 2>/dev/null || true
	done <"$STATE/$name.pids"
	rm -rf "$STATE/$name.pids" "$STATE/$name.data" "$STATE/$name.env"
}

kill_member() {
	local p
	p=$(sed -n "${2}p" "$STATE/$1.pids")
	kill -9 "$p" 2>/dev/null || true
}

leader() {
	local i=0 ep
	. "$STATE/$1.env"
	for ep in ${ENDPOINTS//,/ }; do
		i=$((i + 1))
		curl -fs --max-time 1 "$ep/v2/stats/self" 2>/dev/null | grep -q '"state":"StateLeader"' && { echo $i; return; }
	done
	return 1
}

case "${1:-}" in
start) shift; start "$@" ;;
stop) stop "$2" ;;
kill-member) kill_member "$2" "$3" ;;
leader) leader "$2" ;;
*) echo "usage: $0 start NAME [MEMBERS] [tls] | stop NAME | kill-member NAME I | leader NAME" >&2; exit 2 ;;
esac
