#!/usr/bin/env bash
# run.sh [FILTER...]: run every test suite and count the cases. Unit test binaries (listed by
# meson in $FLEET_BUILD/test/test-list.txt) and shell suites (test/suites/*.sh) print one line
# per case: "ok - NAME", "not ok - NAME" or "skip - NAME: REASON". A suite that dies without
# reporting a failure counts as one failure. Ends with "N passed, N failed, N skipped".
set -uo pipefail
cd "$(dirname "$0")/.."
TOP=$PWD
export FLEET_BUILD=${FLEET_BUILD:-$TOP/build}
export FLEET_BIN=$FLEET_BUILD/fleet
export FLEET_TEST_STATE=${FLEET_TEST_STATE:-$(mktemp -d /tmp/fleet-test.XXXXXX)}
LOGS=$FLEET_BUILD/test-logs
rm -rf "$LOGS"; mkdir -p "$LOGS"

pass=0 fail=0 skip=0 failed=() skipped=()
cleanup() {
	test/lib/etcd.sh stop shared >/dev/null 2>&1 || true
	rm -rf "$FLEET_TEST_STATE"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# One plain etcd shared by the suites; each suite uses its own key prefix.
if command -v etcd >/dev/null; then
	FLEET_TEST_ETCD=$(test/lib/etcd.sh start shared 1) || FLEET_TEST_ETCD=
	export FLEET_TEST_ETCD
fi

selected() {
	[ $# -eq 1 ] && return 0
	local name=$1 f; shift
	for f in "$@"; do [[ $name == *"$f"* ]] && return 0; done
	return 1
}

run_suite() { # name timeout cmd...
	local name=$1 tmo=$2 out rc np=0 nf=0 line
	shift 2
	out=$LOGS/$name.log
	printf '=== %s\n' "$name"
	timeout -k 10 "$tmo" "$@" >"$out" 2>&1
	rc=$?
	while IFS= read -r line; do
		case $line in
		"ok - "*) pass=$((pass + 1)); np=$((np + 1)); echo "  $line" ;;
		"not ok - "*) fail=$((fail + 1)); nf=$((nf + 1)); failed+=("$name: ${line#not ok - }"); echo "  $line" ;;
		"skip - "*) skip=$((skip + 1)); skipped+=("$name: ${line#skip - }"); echo "  $line" ;;
		esac
	done <"$out"
	if [ $rc -ne 0 ] && [ $nf -eq 0 ]; then
		fail=$((fail + 1)); failed+=("$name: exited with status $rc")
		echo "  not ok - $name (exit $rc)"
	fi
	if [ $rc -ne 0 ] || [ $nf -ne 0 ]; then
		echo "  --- log: $out (last lines)"; tail -n 25 "$out" | sed 's/^/  | /'
	fi
}

if [ -f "$FLEET_BUILD/test/test-list.txt" ]; then
	while IFS= read -r bin; do
		[ -n "$bin" ] || continue
		n=$(basename "$bin")
		selected "$n" "$@" && run_suite "$n" 300 "$bin"
	done <"$FLEET_BUILD/test/test-list.txt"
fi
for s in test/suites/*.sh; do
	[ -f "$s" ] || continue
	n=$(basename "$s" .sh)
	selected "$n" "$@" && run_suite "$n" 1200 bash "$s"
done

echo
if [ ${#skipped[@]} -gt 0 ]; then
	echo "Skipped:"; printf '  %s\n' "${skipped[@]}"
fi
if [ ${#failed[@]} -gt 0 ]; then
	echo "Failed:"; printf '  %s\n' "${failed[@]}"
fi
echo "$pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]
