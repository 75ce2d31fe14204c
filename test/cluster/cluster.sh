#!/usr/bin/env bash
# cluster.sh: real multi-host fleet clusters for the tests, sourced by test/suites/cluster-*.sh.
# Each node is a systemd-nspawn container booting systemd 252 as PID 1 on an overlay over a
# cached debootstrap rootfs, in its own network namespace (10.79.0.(10+N) on bridge fleetbr0),
# with sshd, a unique machine ID and host key, the static fleet bind-mounted at /opt/fleet and
# units/fleet.service + units/fleet.socket (+ a TCP socket on 54728) installed and enabled.
# One real etcd on the host listens on 127.0.0.1 and the bridge address.
#
#   cl_init                  prerequisites, rootfs, bridge, etcd, ssh key+agent; sets CL_* vars
#   cl_boot N [meta]         boot node N (fleet starts with it); meta is extra metadata k=v,...
#   cl_exec N CMD...         run CMD inside node N (nsenter)
#   cl_ssh N CMD...          ssh root@node N
#   cl_ctl N ARGS...         host fleetctl against node N's API over TCP
#   cl_stop N / cl_kill N    orderly poweroff / SIGKILL of the node
#   cl_cut_etcd N / cl_heal_etcd N   firewall etcd off inside node N's namespace / undo
#   cl_teardown              everything above, by PID; also run from the EXIT trap
# Every PID started is recorded under $CL_STATE and only those are ever signalled.
set -uo pipefail

CL_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CL_BUILD=${FLEET_BUILD:-$CL_TOP/build}
CL_STATE=${FLEET_CL_STATE:-${FLEET_TEST_STATE:-/tmp/fleet-test}/cluster-$$}
CL_BRIDGE=${FLEET_CL_BRIDGE:-fleetbr0}
CL_NET=${FLEET_CL_NET:-10.79.0}
CL_HOSTIP=$CL_NET.1
CL_PREFIX=${FLEET_CL_PREFIX:-/fleet_functional/$$/}
CL_TTL=${FLEET_CL_TTL:-3s}
CL_ROOTFS=""
CL_ETCD=""

cl_log() { printf '[%s] %s\n' "$(date +%T.%3N)" "$*" >&2; }

# cl_why_not: prints why clusters cannot run here (empty when they can).
cl_why_not() {
	[ "$(id -u)" = 0 ] || { echo "needs root"; return; }
	command -v systemd-nspawn >/dev/null || { echo "systemd-nspawn not installed"; return; }
	command -v debootstrap >/dev/null || { echo "debootstrap not installed"; return; }
	unshare -n true 2>/dev/null || { echo "cannot create network namespaces"; return; }
	[ -d /sys/fs/cgroup/systemd ] || [ -f /sys/fs/cgroup/cgroup.controllers ] || { echo "no usable cgroup hierarchy"; return; }
	[ -x "$CL_BUILD/fleet" ] || { echo "no fleet binary in $CL_BUILD"; return; }
	# Nodes run the binary from the host's build directory with nothing else: it must be the
	# static one (sanitizer builds link dynamically against the host's runtimes).
	file -L "$CL_BUILD/fleet" | grep -q 'statically linked' ||
		{ echo "$CL_BUILD/fleet is not static (sanitizer build): nodes cannot run it"; return; }
}

cl_init() {
	local why
	why=$(cl_why_not)
	[ -z "$why" ] || { echo "$why"; return 1; }
	# Node, netns and veth names are machine-global: one cluster at a time on this machine.
	exec 8>/run/fleet-cluster.lock
	flock -w 1800 8 || { echo "another cluster run holds /run/fleet-cluster.lock"; return 1; }
	mkdir -p "$CL_STATE/pids" "$CL_STATE/nodes"
	if [ -z "${FLEET_CL_KEEP:-}" ]; then
		trap cl_teardown EXIT
		trap 'exit 130' INT TERM
	fi
	CL_ROOTFS=$("$CL_TOP/test/cluster/rootfs.sh") || { echo "rootfs build failed"; return 1; }
	if ! ip link show "$CL_BRIDGE" >/dev/null 2>&1; then
		ip link add "$CL_BRIDGE" type bridge &&
			ip addr add "$CL_HOSTIP/24" dev "$CL_BRIDGE" &&
			ip link set "$CL_BRIDGE" up || { echo "cannot create bridge $CL_BRIDGE"; return 1; }
		touch "$CL_STATE/bridge-created"
	fi
	CL_ETCD=$(FLEET_ETCD_IPS="127.0.0.1 $CL_HOSTIP" FLEET_TEST_STATE=$CL_STATE \
		"$CL_TOP/test/lib/etcd.sh" start cl "${CL_ETCD_MEMBERS:-1}") || { echo "etcd failed"; return 1; }
	CL_ETCD_NODE=${CL_ETCD//127.0.0.1/$CL_HOSTIP}
	mkdir -p "$CL_STATE/ssh"
	ssh-keygen -q -t ed25519 -N '' -f "$CL_STATE/ssh/id_ed25519"
	eval "$(ssh-agent -s)" >/dev/null
	echo "$SSH_AGENT_PID" >"$CL_STATE/pids/ssh-agent"
	ssh-add -q "$CL_STATE/ssh/id_ed25519" 2>/dev/null
	export SSH_AUTH_SOCK
	: >"$CL_STATE/known_hosts"
	export FLEETCTL_SSH_USERNAME=root FLEETCTL_KNOWN_HOSTS_FILE=$CL_STATE/known_hosts
	export FLEETCTL_STRICT_HOST_KEY_CHECKING=false
}

cl_ip() { echo "$CL_NET.$((10 + $1))"; }
cl_init_pid() { cat "$CL_STATE/nodes/n$1/init.pid" 2>/dev/null; }

# Writes node N's overlay: identity, ssh, fleet units and config.
cl_prepare_node() {
	local n=$1 meta=${2:-} d=$CL_STATE/nodes/n$1 m ip
	ip=$(cl_ip "$n")
	mkdir -p "$d"/{upper,work,merged}
	mountpoint -q "$d/merged" ||
		mount -t overlay "fleet-n$n" -o "lowerdir=$CL_ROOTFS,upperdir=$d/upper,workdir=$d/work" "$d/merged" || return 1
	m=$d/merged
	echo "fleet-n$n" >"$m/etc/hostname"
	[ -s "$m/etc/machine-id" ] || { od -An -tx1 -N16 /dev/urandom | tr -d ' \n'; echo; } >"$m/etc/machine-id"
	[ -f "$m/etc/ssh/ssh_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$m/etc/ssh/ssh_host_ed25519_key"
	install -m 600 "$CL_STATE/ssh/id_ed25519.pub" "$m/root/.ssh/authorized_keys"
	printf '127.0.0.1 localhost\n%s fleet-n%s\n%s fleet-host\n' "$ip" "$n" "$CL_HOSTIP" >"$m/etc/hosts"
	mkdir -p "$m/opt/fleet" "$m/etc/fleet"
	ln -sf /opt/fleet/fleet "$m/usr/bin/fleet"
	ln -sf /opt/fleet/fleet "$m/usr/bin/fleetctl"
	install -m 644 "$CL_TOP/units/fleet.service" "$CL_TOP/units/fleet.socket" "$m/etc/systemd/system/"
	printf '[Socket]\nListenStream=54728\nService=fleet.service\n\n[Install]\nWantedBy=sockets.target\n' \
		>"$m/etc/systemd/system/fleet-tcp.socket"
	mkdir -p "$m/etc/systemd/system/multi-user.target.wants" "$m/etc/systemd/system/sockets.target.wants"
	ln -sf ../fleet.service "$m/etc/systemd/system/multi-user.target.wants/fleet.service"
	ln -sf ../fleet.socket "$m/etc/systemd/system/sockets.target.wants/fleet.socket"
	ln -sf ../fleet-tcp.socket "$m/etc/systemd/system/sockets.target.wants/fleet-tcp.socket"
	cat >"$m/etc/fleet/fleet.conf" <<-CONF
		verbosity=1
		etcd_servers=$CL_ETCD_NODE
		etcd_key_prefix=$CL_PREFIX
		public_ip=$ip
		agent_ttl=$CL_TTL
		engine_reconcile_interval=1
		metadata=hostname=fleet-n$n${meta:+,$meta}
	CONF
}

cl_boot() {
	local n=$1 meta=${2:-} d=$CL_STATE/nodes/n$1 ns=fleet-n$1 veth=flv$1 cg pid init h
	# A fresh cgroup per boot: a killed node's cgroups can linger while its processes are
	# reaped, and nspawn must not find half-removed ones.
	CL_BOOTS=$((${CL_BOOTS:-0} + 1))
	cg=fleet-cluster.slice/node-$n-$$-$CL_BOOTS
	cl_prepare_node "$n" "$meta" || return 1
	if [ ! -e "/run/netns/$ns" ]; then
		ip netns add "$ns" &&
			ip link add "$veth" type veth peer name eth0 netns "$ns" &&
			ip link set "$veth" master "$CL_BRIDGE" up &&
			ip -n "$ns" addr add "$(cl_ip "$n")/24" dev eth0 &&
			ip -n "$ns" link set eth0 up &&
			ip -n "$ns" link set lo up &&
			ip -n "$ns" route add default via "$CL_HOSTIP" || return 1
	fi
	for h in unified systemd; do [ -d "/sys/fs/cgroup/$h" ] && mkdir -p "/sys/fs/cgroup/$h/$cg"; done
	setsid bash -c '
		for h in unified systemd; do [ -d /sys/fs/cgroup/$h/'"$cg"' ] && echo $$ >/sys/fs/cgroup/$h/'"$cg"'/cgroup.procs; done
		exec systemd-nspawn --quiet -D "$0" --boot --register=no --keep-unit --machine="$1" \
			--network-namespace-path="/run/netns/$1" --console=read-only --bind-ro="$2:/opt/fleet"' \
		"$d/merged" "$ns" "$CL_BUILD" >"$d/console.log" 2>&1 </dev/null &
	pid=$!
	disown "$pid"
	echo "$pid" >"$d/nspawn.pid"
	echo "$cg" >"$d/cgroup"
	for _ in $(seq 200); do
		init=$(pgrep -P "$pid" -x systemd 2>/dev/null) && break
		sleep 0.05
	done
	[ -n "${init:-}" ] || { cl_log "node $n: no init"; tail -5 "$d/console.log" >&2; return 1; }
	echo "$init" >"$d/init.pid"
	for _ in $(seq 200); do [ -S "/proc/$init/root/run/systemd/private" ] && break; sleep 0.05; done
	timeout 60 nsenter -t "$init" -a systemctl is-system-running --wait >/dev/null 2>&1
	cl_exec "$n" systemctl is-active -q fleet.service || { cl_log "node $n: fleet.service not active"; return 1; }
}

cl_exec() {
	local n=$1; shift
	nsenter -t "$(cl_init_pid "$n")" -a -- env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin TERM=dumb "$@"
}

cl_ssh() {
	local n=$1; shift
	ssh -i "$CL_STATE/ssh/id_ed25519" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
		-o LogLevel=ERROR -o BatchMode=yes -o ConnectTimeout=5 "root@$(cl_ip "$n")" "$@"
}

cl_ctl() {
	local n=$1; shift
	"$CL_BUILD/fleetctl" --endpoint "http://$(cl_ip "$n"):54728" "$@"
}

cl_machine_id() { cat "$CL_STATE/nodes/n$1/merged/etc/machine-id"; }

# Orderly poweroff (SIGTERM to nspawn makes the container's systemd shut down).
cl_stop() {
	local n=$1 d=$CL_STATE/nodes/n$1 p h
	p=$(cat "$d/nspawn.pid" 2>/dev/null) || return 0
	kill "$p" 2>/dev/null
	for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
	cl_kill "$n"
}

# Power cut: SIGKILL the container's PID 1, which takes its whole PID namespace with it
# (killing only systemd-nspawn would leave the container running as an orphan).
cl_kill() {
	local n=$1 d=$CL_STATE/nodes/n$1 p i
	p=$(cat "$d/nspawn.pid" 2>/dev/null) || return 0
	i=$(cl_init_pid "$n") && kill -9 "$i" 2>/dev/null
	kill -9 "$p" 2>/dev/null
	for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
	cl_cleanup_node "$n"
}

cl_cleanup_node() {
	local n=$1 d=$CL_STATE/nodes/n$1 h cg
	for _ in $(seq 50); do mountpoint -q "$d/merged" || break; umount "$d/merged" 2>/dev/null || sleep 0.1; done
	for _ in $(seq 10); do [ -e "/run/netns/fleet-n$n" ] || break; ip netns del "fleet-n$n" 2>/dev/null || sleep 0.3; done
	ip link del "flv$n" 2>/dev/null
	cg=$(cat "$d/cgroup" 2>/dev/null)
	for h in unified systemd; do
		[ -n "$cg" ] && [ -d "/sys/fs/cgroup/$h/$cg" ] &&
			find "/sys/fs/cgroup/$h/$cg" -depth -type d -exec rmdir {} \; 2>/dev/null
	done
	rm -f "$d/nspawn.pid" "$d/init.pid" "$d/cgroup"
	return 0
}

# A node that is gone for good: killed, and its disk (machine ID, host key) wiped.
cl_destroy() {
	cl_kill "$1"
	rm -rf "$CL_STATE/nodes/n$1"
}

# Firewall every etcd member's client port inside node N's namespace (REJECT, as fleet's
# functional tests do), and undo it.
cl_etcd_ports() { local e; for e in ${CL_ETCD//,/ }; do echo "${e##*:}"; done; }
cl_cut_etcd() {
	local p
	for p in $(cl_etcd_ports); do
		ip netns exec "fleet-n$1" iptables -I OUTPUT -d "$CL_HOSTIP" -p tcp --dport "$p" -j REJECT --reject-with tcp-reset
	done
}
cl_heal_etcd() {
	local p
	for p in $(cl_etcd_ports); do
		ip netns exec "fleet-n$1" iptables -D OUTPUT -d "$CL_HOSTIP" -p tcp --dport "$p" -j REJECT --reject-with tcp-reset
	done
}

cl_teardown() {
	local d n p
	trap - EXIT
	for d in "$CL_STATE"/nodes/n*; do
		[ -d "$d" ] || continue
		n=${d##*/n}
		p=$(cl_init_pid "$n") && kill -9 "$p" 2>/dev/null
		p=$(cat "$d/nspawn.pid" 2>/dev/null) && kill -9 "$p" 2>/dev/null
	done
	sleep 0.2
	for d in "$CL_STATE"/nodes/n*; do [ -d "$d" ] && cl_cleanup_node "${d##*/n}"; done
	FLEET_TEST_STATE=$CL_STATE "$CL_TOP/test/lib/etcd.sh" stop cl 2>/dev/null
	p=$(cat "$CL_STATE/pids/ssh-agent" 2>/dev/null) && kill "$p" 2>/dev/null
	[ -f "$CL_STATE/bridge-created" ] && ip link del "$CL_BRIDGE" 2>/dev/null
	for h in unified systemd; do
		[ -d "/sys/fs/cgroup/$h/fleet-cluster.slice" ] &&
			find "/sys/fs/cgroup/$h/fleet-cluster.slice" -depth -type d -exec rmdir {} \; 2>/dev/null
	done
	rm -rf "$CL_STATE"
	return 0
}

# Polling helpers (bounded): cl_wait SECONDS CMD... until CMD succeeds.
cl_wait() {
	local t=$1 end; shift
	end=$((SECONDS + t))
	until "$@" >/dev/null 2>&1; do
		[ $SECONDS -lt $end ] || return 1
		sleep 0.25
	done
}
