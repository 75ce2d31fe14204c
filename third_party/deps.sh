#!/usr/bin/env bash
# deps.sh - fetch Debian's systemd and cjson source packages and build what fleet links
# statically: libsystemd.a (sd-bus, sd-event) and cJSON.c. Nothing foreign is committed;
# the sources come from the machine's own apt sources (deb-src twins, private apt state).
#
#   third_party/deps.sh OUTDIR     -> OUTDIR/lib/libsystemd.a, OUTDIR/include/systemd/*.h,
#                                     OUTDIR/cjson/cJSON.{c,h}
set -euo pipefail

OUT=${1:?usage: deps.sh OUTDIR}
JOBS=${JOBS:-$(nproc)}
# The versions this recipe was written and tested against (Debian 12 "bookworm").
SYSTEMD_SERIES=252
CJSON_SERIES=1.7
export PATH=/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin   # Debian's python3 has jinja2

[ -f "$OUT/.done" ] && exit 0
mkdir -p "$OUT"
log() { printf 'deps: %s\n' "$*" >&2; }

# deb-src twins of every enabled deb entry, in both apt source formats. No host is named here.
write_src_parts() {
	local parts=$1 f n=0
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		sed -E 's/^Types:.*$/Types: deb-src/' "$f" >"$parts/src$((n++)).sources"
	done
	{
		cat /etc/apt/sources.list 2>/dev/null || true
		cat /etc/apt/sources.list.d/*.list 2>/dev/null || true
	} | sed -nE 's/^[[:space:]]*deb[[:space:]]+/deb-src /p' >"$parts/src.list"
}

fetch_sources() {
	local A=$OUT/apt
	ls -d "$OUT"/src/systemd-$SYSTEMD_SERIES*/ "$OUT"/src/cjson-$CJSON_SERIES*/ >/dev/null 2>&1 && return
	log "fetching systemd and cjson source packages"
	rm -rf "$OUT/src" "$A"
	mkdir -p "$A/parts" "$A/lists/partial" "$A/cache/archives/partial" "$OUT/src"
	write_src_parts "$A/parts"
	local opts=(-o Dir::Etc::SourceList="$A/parts/src.list" -o Dir::Etc::SourceParts="$A/parts"
		-o Dir::State::Lists="$A/lists" -o Dir::Cache="$A/cache" -o APT::Sandbox::User=root)
	apt-get "${opts[@]}" -qq update
	(cd "$OUT/src" && apt-get "${opts[@]}" -qq source systemd cjson >/dev/null 2>&1) ||
		{ log "apt-get source failed"; exit 1; }
	ls -d "$OUT"/src/systemd-$SYSTEMD_SERIES*/ "$OUT"/src/cjson-$CJSON_SERIES*/ >/dev/null ||
		{ log "expected systemd $SYSTEMD_SERIES.x and cjson $CJSON_SERIES.x"; exit 1; }
}

# Only `ninja libsystemd.a` is built, with every optional dependency off.
# Pitfall: libsystemd.a does not depend on the generated version.h; build it first.
build_libsystemd() {
	local SRC B=$OUT/sd-build
	SRC=$(ls -d "$OUT"/src/systemd-$SYSTEMD_SERIES*/ | head -1)
	if [ ! -f "$B/build.ninja" ]; then
		log "meson setup systemd"
		meson setup "$B" "$SRC" --buildtype=release -Dmode=release \
			-Dstatic-libsystemd=pic -Dtests=false -Dskip-deps=true \
			-Dman=false -Dhtml=false -Dtranslations=false -Dgnu-efi=false -Defi=false \
			-Dbpf-framework=false -Dnss-myhostname=false -Dnss-systemd=false \
			-Dnss-mymachines=false -Dnss-resolve=false -Dnobody-group=nogroup >"$OUT/sd-setup.log"
	fi
	log "building libsystemd.a"
	ninja -C "$B" -j"$JOBS" version.h >/dev/null
	ninja -C "$B" -j"$JOBS" libsystemd.a >"$OUT/sd-ninja.log"
	mkdir -p "$OUT/lib" "$OUT/include/systemd"
	cp "$B/libsystemd.a" "$OUT/lib/"
	cp "$SRC"/src/systemd/*.h "$OUT/include/systemd/"
}

copy_cjson() {
	local C
	C=$(ls -d "$OUT"/src/cjson-$CJSON_SERIES*/ | head -1)
	mkdir -p "$OUT/cjson"
	cp "$C/cJSON.c" "$C/cJSON.h" "$C/LICENSE" "$OUT/cjson/"
}

fetch_sources
build_libsystemd
copy_cjson
rm -rf "$OUT/sd-build" "$OUT/apt"
touch "$OUT/.done"
