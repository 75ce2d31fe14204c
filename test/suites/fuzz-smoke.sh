#!/usr/bin/env bash
# fuzz-smoke.sh: every libFuzzer target (test/fuzz/) for a few seconds: first each stored
# regression input (test/fuzz/regressions/<target>/*) on its own, then a short fuzzing run over
# the seeds. One case per target: "ok - fuzz.<target>", "not ok - ..." or a skip when clang or
# libFuzzer is missing. The targets are built by test/fuzz.sh in build-fuzz/ (clang, ASan+UBSan).
# FLEET_FUZZ_SMOKE_SECONDS (default 3) sets the fuzzing time per target.
# The run uses a fixed seed (FLEET_FUZZ_SMOKE_SEED, default 1): a gate should not draw new
# inputs each time it runs (libFuzzer still drifts a little between runs of one seed, but the
# mutations start the same). Exploring belongs to `./build.sh fuzz`, which seeds at random.
set -uo pipefail
TOP=$(cd "$(dirname "$0")/../.." && pwd)
cd "$TOP"
# shellcheck source=../lib/testlib.sh
. test/lib/testlib.sh

SECS=${FLEET_FUZZ_SMOKE_SECONDS:-3}
SEED=${FLEET_FUZZ_SMOKE_SEED:-1}
FUZZ_BUILD=${FLEET_FUZZ_BUILD:-$TOP/build-fuzz}
export FLEET_FUZZ_BUILD=$FUZZ_BUILD
mapfile -t targets < <(test/fuzz.sh --list)

skip_all() {
	local t
	for t in "${targets[@]}"; do t_skip "fuzz.$t" "$1"; done
	exit 0
}

command -v clang >/dev/null || skip_all "clang not installed"
mkdir -p "$FUZZ_BUILD"
if ! test/fuzz.sh --build >"$FUZZ_BUILD/smoke-build.log" 2>&1; then
	if grep -q "libFuzzer is not available" "$FUZZ_BUILD/smoke-build.log"; then
		skip_all "libFuzzer not available (libclang-rt-14-dev)"
	fi
	t_fail "fuzz.build" "test/fuzz.sh --build failed:" "$(tail -n 30 "$FUZZ_BUILD/smoke-build.log")"
	exit 1
fi

smoke() { # target
	local t=$1 bin=$FUZZ_BUILD/test/fuzz/fuzz-$1 work rc=0 f
	local regs=() dirs=()
	for f in test/fuzz/regressions/"$t"/*; do [ -f "$f" ] && regs+=("$f"); done
	if [ ${#regs[@]} -gt 0 ]; then
		# Each file once; any crash or violated property fails.
		if ! "$bin" -timeout=20 -rss_limit_mb=2048 "${regs[@]}" >&2; then
			echo "fuzz.$t: a stored regression input fails again (above)" >&2
			return 1
		fi
	fi
	work=$(mktemp -d)
	dirs=("$work")
	[ -d "test/fuzz/$t" ] && dirs+=("test/fuzz/$t")
	"$bin" -seed="$SEED" -max_total_time="$SECS" -timeout=20 -rss_limit_mb=2048 -artifact_prefix="$work/" \
		"${dirs[@]}" >"$work/log" 2>&1 || rc=$?
	if [ $rc -ne 0 ]; then
		cat "$work/log" >&2
		for f in "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-*; do
			[ -f "$f" ] || continue
			echo "fuzz.$t: crashing input (base64): $(base64 -w0 "$f")" >&2
		done
	fi
	grep -E '^(#[0-9]+ +DONE|Done [0-9]+ runs)' "$work/log" >&2 || true
	rm -rf "$work"
	return $rc
}

for t in "${targets[@]}"; do
	if [ ! -x "$FUZZ_BUILD/test/fuzz/fuzz-$t" ]; then
		t_skip "fuzz.$t" "not built: a lib/ module it needs is missing (see $FUZZ_BUILD/meson-logs)"
		continue
	fi
	t_run "fuzz.$t" smoke "$t"
done
exit $TL_FAILED
