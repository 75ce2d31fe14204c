#!/usr/bin/env bash
# fuzz.sh: the libFuzzer targets (test/fuzz/fuzz-<target>.c), built by clang with ASan+UBSan in
# their own build directory ($FLEET_FUZZ_BUILD, default build-fuzz/).
#   test/fuzz.sh [SECONDS] [TARGET...]   build, then fuzz each target SECONDS (default 60)
#   test/fuzz.sh --build                 only build (prints the build directory)
#   test/fuzz.sh --list                  the targets
# `./build.sh fuzz [SECONDS]` runs the first form. Each target first replays its stored crashes
# (test/fuzz/regressions/<target>/*), then fuzzes from its seeds (test/fuzz/<target>/); inputs it finds are
# kept in build-fuzz/corpus/<target>/ for the next run, crashes land in
# build-fuzz/artifacts/<target>/ (minimise one with `BIN -minimize_crash=1 -runs=10000 FILE`,
# then add it under test/fuzz/regressions/<target>/). Exits non-zero if a target crashed.
# FLEET_FUZZ_KEEP_GOING=1: do not stop at the first crash (libFuzzer -fork=1 -ignore_crashes=1),
# to collect every distinct crash of a long run.
set -euo pipefail
cd "$(dirname "$0")/.."
TOP=$PWD
FUZZ_BUILD=${FLEET_FUZZ_BUILD:-$TOP/build-fuzz}

log() { printf 'fuzz.sh: %s\n' "$*" >&2; }

targets() {
	local f
	for f in test/fuzz/fuzz-*.c; do
		f=${f##*/fuzz-}
		echo "${f%.c}"
	done
}

# The dependency prefix of the normal build (libsystemd.a, cJSON): the same libraries.
deps_prefix() {
	local b=${FLEET_BUILD:-$TOP/build} d
	if [ -n "${FLEET_DEPS:-}" ]; then
		echo "$FLEET_DEPS"
		return
	fi
	d=$(python3 -c 'import json,sys
for o in json.load(open(sys.argv[1])):
    if o["name"] == "deps": print(o["value"])' "$b/meson-info/intro-buildoptions.json" 2>/dev/null || true)
	if [ -z "$d" ]; then
		d=$(ls -d /var/cache/fleet/deps-* 2>/dev/null | tail -n 1 || true)
	fi
	[ -n "$d" ] && [ -f "$d/.done" ] || { log "no dependency prefix: run ./build.sh first"; return 1; }
	echo "$d"
}

# Whether clang can build and link a libFuzzer binary here.
have_libfuzzer() {
	local t
	command -v clang >/dev/null || return 1
	t=$(mktemp -d)
	printf '%s\n' '#include <stddef.h>' '#include <stdint.h>' \
		'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void) d; (void) n; return 0; }' >"$t/t.c"
	local rc=0
	clang -fsanitize=fuzzer,address,undefined "$t/t.c" -o "$t/t" >/dev/null 2>&1 || rc=1
	rm -rf "$t"
	return $rc
}

build() {
	local deps
	have_libfuzzer || { log "clang with libFuzzer is not available (apt-get install clang libclang-rt-14-dev)"; return 1; }
	deps=$(deps_prefix) || return 1
	mkdir -p "$FUZZ_BUILD"
	(
		flock 9
		if [ ! -f "$FUZZ_BUILD/build.ninja" ]; then
			# -fsanitize=fuzzer-no-link on everything: lib/ gets coverage instrumentation too.
			# werror off for the tree (other modules are checked by gcc in build/); the fuzz
			# targets turn it back on for themselves.
			CC=clang meson setup "$FUZZ_BUILD" -Ddeps="$deps" -Dfuzz=true \
				-Dbuildtype=debugoptimized -Db_sanitize=address,undefined -Db_lundef=false \
				-Dwerror=false -Dc_args='-fsanitize=fuzzer-no-link -fno-sanitize-recover=all -fno-omit-frame-pointer' \
				>"$FUZZ_BUILD/setup.log" 2>&1 || { cat "$FUZZ_BUILD/setup.log" >&2; exit 1; }
		fi
		ninja -C "$FUZZ_BUILD" fuzz-targets >"$FUZZ_BUILD/ninja.log" 2>&1 || { cat "$FUZZ_BUILD/ninja.log" >&2; exit 1; }
	) 9>"$FUZZ_BUILD/.lock"
}

# stat N: the value of "stat::N:" in a libFuzzer log.
stat() { sed -n "s/^stat::$1: *//p" "$2" | tail -n 1; }

# Executions per second: libFuzzer's final stats, or in fork mode total runs / seconds.
exec_rate() { # log seconds
	local r
	r=$(stat average_exec_per_sec "$1")
	[ -n "$r" ] || r=$(sed -n 's/^#\([0-9]*\): cov:.*/\1/p' "$1" | tail -n 1 | awk -v s="$2" '{ if (s > 0) printf "%d", $1 / s }')
	echo "${r:-?}"
}

fuzz_one() { # target seconds
	local t=$1 secs=$2 bin=$FUZZ_BUILD/test/fuzz/fuzz-$1 work=$FUZZ_BUILD/corpus/$1 art=$FUZZ_BUILD/artifacts/$1/
	local dirs=() opts=() logf=$FUZZ_BUILD/logs/$1.log rc=0 new f
	[ -x "$bin" ] || { log "$t: not built (its module is missing?)"; return 0; }
	mkdir -p "$work" "$art" "$FUZZ_BUILD/logs"
	regress=0
	dirs=("$work")
	[ -d "test/fuzz/$t" ] && dirs+=("test/fuzz/$t")
	# Stored crashes first, each on its own: one that still fails is reported and the target
	# is fuzzed anyway (from the seeds; the regression would stop libFuzzer at once).
	for f in test/fuzz/regressions/"$t"/*; do
		[ -f "$f" ] || continue
		if ! "$bin" -timeout=20 "$f" >"$FUZZ_BUILD/logs/$t.regression.log" 2>&1; then
			echo "$t: regression $f still fails:"
			grep -a -m3 -E 'property violated|^==[0-9]+==ERROR|runtime error|^token|^duration' \
				"$FUZZ_BUILD/logs/$t.regression.log" | sed 's/^/    /'
			regress=$((regress + 1))
		fi
	done
	[ -f "test/fuzz/$t.dict" ] && opts+=("-dict=test/fuzz/$t.dict")
	[ "${FLEET_FUZZ_KEEP_GOING:-0}" = 1 ] && opts+=(-fork=1 -ignore_crashes=1)
	touch "$FUZZ_BUILD/logs/$t.start"
	"$bin" "${opts[@]}" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
		-artifact_prefix="$art" "${dirs[@]}" >"$logf" 2>&1 || rc=$?
	new=$(find "$art" -type f -newer "$FUZZ_BUILD/logs/$t.start" | wc -l)
	[ $rc -eq 0 ] && [ "$new" -gt 0 ] && rc=1
	printf '%-20s %3ss  %8s exec/s  corpus %5s  cov %6s  %s\n' "$t" "$secs" \
		"$(exec_rate "$logf" "$secs")" "$(find "$work" -type f | wc -l)" \
		"$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' "$logf" | tail -n 1)" \
		"$([ $rc -eq 0 ] && echo ok || echo "CRASH (exit $rc), log $logf")"
	if [ $rc -ne 0 ]; then
		find "$art" -type f -newer "$FUZZ_BUILD/logs/$t.start" | head -n 5 | sed 's/^/    artifact: /'
		[ "$new" -le 5 ] || echo "    ... and $((new - 5)) more in $art"
		grep -a -m1 -B2 -A12 -E '^==[0-9]+==ERROR|runtime error|property violated' "$logf" | sed 's/^/    /' || true
		return 1
	fi
	[ $regress -eq 0 ]
}

case "${1:-}" in
--list) targets; exit 0 ;;
--build) build; echo "$FUZZ_BUILD"; exit 0 ;;
esac

secs=60
if [[ ${1:-} =~ ^[0-9]+$ ]]; then secs=$1; shift; fi
sel=("$@")
[ ${#sel[@]} -gt 0 ] || mapfile -t sel < <(targets)
build
failed=0
for t in "${sel[@]}"; do
	fuzz_one "$t" "$secs" || failed=$((failed + 1))
done
[ $failed -eq 0 ] || { log "$failed target(s) crashed"; exit 1; }
