#!/bin/sh
# embed.sh IN OUT: writes OUT, a C file defining IN's text as the string fl_api_discovery_json
# (the discovery document served at /fleet/v1/discovery). Run by meson.
set -eu
{
	printf '/* Generated from %s by schema/embed.sh: do not edit. */\n' "$(basename "$1")"
	printf 'extern const char fl_api_discovery_json[];\n'
	printf 'const char fl_api_discovery_json[] =\n'
	sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/        "/' -e 's/$/\\n"/' "$1"
	printf '        ;\n'
} >"$2.tmp"
mv "$2.tmp" "$2"
