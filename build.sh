#!/usr/bin/env bash
# build.sh: the one entry point for humans and CI.
#   ./build.sh               install missing Debian packages, fetch+build deps, build build/fleet
#   ./build.sh test [--asan] [SUITE...]   build, then run every test; ends "N passed, N failed"
#   ./build.sh bench | fuzz [SECONDS] | demo [stop] | clean
set -euo pipefail
cd "$(dirname "$0")"
TOP=$PWD
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export DEBIAN_FRONTEND=noninteractive

PKGS_BUILD="gcc libc6-dev meson ninja-build pkg-config gperf python3 python3-jinja2 libcap-dev
 libmount-dev libmbedtls-dev dpkg-dev file"
PKGS_TEST="etcd-server curl openssl util-linux systemd dbus iproute2 systemd-container debootstrap
 openssh-client openssh-server iptables procps psmisc clang libclang-rt-14-dev"

log() { printf 'build.sh: %s\n' "$*" >&2; }

install_pkgs() {
	local missing=() p
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return
	if [ "$(id -u)" != 0 ]; then
		log "missing packages (run as root to install): ${missing[*]}"
		exit 1
	fi
	log "installing ${missing[*]}"
	flock /tmp/apt.lock apt-get update -qq
	flock /tmp/apt.lock apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Built dependencies are cached per recipe version, outside the tree, so a fresh clone on the
# same machine does not rebuild libsystemd.a. FLEET_DEPS overrides the location.
deps_dir() {
	local key
	key=$(sha1sum third_party/deps.sh | cut -c1-12)
	if [ -n "${FLEET_DEPS:-}" ]; then
		echo "$FLEET_DEPS"
	elif [ -w /var/cache ] || mkdir -p /var/cache/fleet 2>/dev/null; then
		echo "/var/cache/fleet/deps-$key"
	else
		echo "$TOP/build/deps-$key"
	fi
}

# build DIR [meson options...]
build_in() {
	local dir=$1; shift
	local deps
	deps=$(deps_dir)
	[ -f "$deps/.done" ] || third_party/deps.sh "$deps"
	if [ ! -f "$dir/build.ninja" ]; then
		meson setup "$dir" -Ddeps="$deps" "$@" >"$TOP/build-setup.log" 2>&1 ||
			{ cat "$TOP/build-setup.log"; exit 1; }
		rm -f "$TOP/build-setup.log"
	fi
	ninja -C "$dir" >"$dir/ninja.log" 2>&1 || { cat "$dir/ninja.log"; exit 1; }
	ln -sf fleet "$dir/fleetctl"
	ln -sf fleet "$dir/fleetd"
	check_symbols "$dir" "$deps"
}

# Our global symbols must not collide with libsystemd.a's ~1600 internal names: the static
# link would pick one silently. Every global of ours is prefixed (fl_, applet_).
check_symbols() {
	local dir=$1 deps=$2 stamp=$1/.symcheck
	[ "$stamp" -nt "$dir/fleet" ] && return
	local clash
	clash=$(comm -12 <(nm -g --defined-only "$dir"/libfleet-core.a 2>/dev/null | awk 'NF==3{print $3}' | sort -u) \
		<(nm -g --defined-only "$deps/lib/libsystemd.a" 2>/dev/null | awk 'NF==3{print $3}' | sort -u))
	if [ -n "$clash" ]; then
		log "symbols defined both by lib/ and libsystemd.a: $clash"
		exit 1
	fi
	touch "$stamp"
}

cmd_build() {
	install_pkgs $PKGS_BUILD
	build_in build
}

cmd_test() {
	local dir=build
	if [ "${1:-}" = --asan ]; then
		shift
		dir=build-asan
		install_pkgs $PKGS_BUILD
		build_in "$dir" -Db_sanitize=address,undefined -Db_lundef=false
	else
		cmd_build
	fi
	install_pkgs $PKGS_TEST
	FLEET_BUILD=$TOP/$dir exec test/run.sh "$@"
}

case "${1:-build}" in
build) cmd_build ;;
test) shift; cmd_test "$@" ;;
clean) rm -rf build build-asan build-fuzz ;;
fuzz)
	# The fuzz targets need only lib/ and the dependencies, not a linked fleet binary.
	install_pkgs $PKGS_BUILD clang libclang-rt-14-dev
	FLEET_DEPS=$(deps_dir)
	[ -f "$FLEET_DEPS/.done" ] || third_party/deps.sh "$FLEET_DEPS"
	export FLEET_DEPS
	shift; exec test/fuzz.sh "$@" ;;
bench | demo)
	cmd_build
	script=test/$1.sh
	[ -x "$script" ] || { log "'$1' is not implemented yet"; exit 1; }
	shift; exec "$script" "$@" ;;
-h | --help | help) sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//' ;;
*) log "unknown command '$1' (try --help)"; exit 2 ;;
esac
