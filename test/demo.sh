#!/usr/bin/env bash
# demo.sh [stop]: a local 3-machine fleet cluster for newcomers: one etcd plus three
# systemd-nspawn nodes running the current build/fleet. `./build.sh demo stop` tears it down.
set -uo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
export FLEET_CL_STATE=/var/tmp/fleet-demo FLEET_CL_KEEP=1 FLEET_CL_PREFIX=/_coreos.com/fleet/
export FLEET_CL_TTL=10s
. "$TOP/test/cluster/cluster.sh"

if [ "${1:-}" = stop ]; then
	[ -d "$CL_STATE" ] || { echo "no demo cluster running"; exit 0; }
	[ -f "$CL_STATE/bridge-created" ] || touch "$CL_STATE/bridge-created"
	cl_teardown
	echo "demo cluster stopped"
	exit 0
fi
if [ -d "$CL_STATE/nodes" ]; then
	echo "a demo cluster is already running; './build.sh demo stop' first" >&2
	exit 1
fi
why=$(cl_why_not)
[ -z "$why" ] || { echo "cannot start the demo: $why" >&2; exit 1; }
cl_init || { cl_teardown; exit 1; }
for n in 1 2 3; do
	cl_boot "$n" "region=$([ "$n" = 3 ] && echo eu || echo us),role=web" || { echo "node $n failed to boot" >&2; cl_teardown; exit 1; }
done
ep="http://$(cl_ip 1):54728"
cat <<MSG

A 3-machine fleet cluster is running (etcd at $CL_ETCD, nodes $(cl_ip 1) $(cl_ip 2) $(cl_ip 3)).
Try:

  build/fleetctl --endpoint $ep list-machines
  build/fleetctl --endpoint $ep start units/examples/hello.service
  build/fleetctl --endpoint $ep start units/examples/web@{1..3}.service
  build/fleetctl --endpoint $ep list-units

Inside a node: nsenter -t \$(cat $CL_STATE/nodes/n1/init.pid) -a systemctl status fleet
Stop it with: ./build.sh demo stop
MSG
