#!/usr/bin/env bash
# bench/nodes.sh — pub/sub throughput of mqlb broker nodes: publishers and
# subscribers on the same node, on different nodes of a 2-node cluster (every
# message crosses the NATS mesh), and mosquitto under the same load, in
# alternating order over several rounds; then the tables of medians with the
# ratios cross-node ÷ same node and one node ÷ mosquitto. Then durability:
# QoS 1 cross-node to persistent-session subscribers on a cluster with
# sessions.durability memory and on one with replicated (every QoS 1 publish
# stored in JetStream before its PUBACK, delivered through the sessions'
# durable consumers), side by side with mosquitto (persistent subscribers
# too).
#
#   bench/nodes.sh [--rounds N] [--duration D] [--out DIR] [--durability-only]
#
# --durability-only skips the same-node/cross-node/mosquitto rounds.
#
# Needs mosquitto and Go (or a built bin/mqlb). Installs nothing; every
# process it starts is stopped on exit, error or Ctrl-C.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MQLB=$ROOT/bin/mqlb
ROUNDS=3
DURATION=15s
OUT=""
DURABILITY_ONLY=""
while [ $# -gt 0 ]; do
	case $1 in
	--rounds) ROUNDS=$2; shift 2 ;;
	--duration) DURATION=$2; shift 2 ;;
	--out) OUT=$2; shift 2 ;;
	--durability-only) DURABILITY_ONLY=1; shift ;;
	-h | --help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
	*) echo "nodes.sh: unknown argument $1" >&2; exit 2 ;;
	esac
done
[ -n "$OUT" ] || OUT=$(mktemp -d /tmp/mqlb-nodes.XXXXXX)
RUN=$OUT/run
mkdir -p "$RUN"
. "$ROOT/bench/lib.sh"

command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] ||
	die "missing: mosquitto. Install with: sudo apt-get install -y mosquitto"
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
build_mqlb

# mosquitto, configured as in compare.sh
MOSQ_PORT=$(free_port)
printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_connections -1\nmax_queued_messages 1000000\n' "$MOSQ_PORT" >"$RUN/mosquitto.conf"
"$MOSQUITTO" -c "$RUN/mosquitto.conf" >"$RUN/mosquitto.log" 2>&1 &
PIDS+=($!)
wait_port "$MOSQ_PORT" mosquitto

# two 2-node clusters (mqlb up without using its load balancer): one with
# sessions.durability memory, one replicated (2 replicas)
cluster() { # name durability → sets PORT_<name>
	local port
	port=$(free_port)
	"$MQLB" up --nodes 2 --durability "$2" --node-port "$port" --listen "127.0.0.1:$(free_port)" \
		--admin "127.0.0.1:$(free_port)" --data "$RUN/data-$1" >"$RUN/up-$1.log" 2>&1 &
	PIDS+=($!)
	# a node listens once the cluster's JetStream has a leader: 5-11 s here
	wait_port "$port" "$1 node1" 60
	wait_port $((port + 1)) "$1 node2" 60
	for _ in $(seq 100); do grep -q "Ctrl-C stops everything" "$RUN/up-$1.log" && break; sleep 0.2; done
	eval "PORT_$1=$port"
}
cluster mem memory
cluster rep replicated

N1=mqtt://127.0.0.1:$PORT_mem
N2=mqtt://127.0.0.1:$((PORT_mem + 1))
R1=mqtt://127.0.0.1:$PORT_rep
R2=mqtt://127.0.0.1:$((PORT_rep + 1))
MQ=mqtt://127.0.0.1:$MOSQ_PORT
PUBSUB=(--publishers 4 --subscribers 4 --topics 4 --size 256 --drain 10s --duration "$DURATION")

run() { # round target
	local r=$1 t=$2 pub sub
	case $t in
	mosquitto) pub=$MQ sub=$MQ ;;
	same) pub=$N1 sub=$N1 ;;
	cross) pub=$N1 sub=$N2 ;;
	esac
	for q in 0 1; do
		bench "r$r-$t-q$q" pubsub --pub-url "$pub" --sub-url "$sub" --qos $q --prefix "r$r-$t-q$q-" "${PUBSUB[@]}"
	done
}

durable() { # round target: QoS 1 to persistent subscribers
	local r=$1 t=$2 pub sub
	case $t in
	mosquitto_p) pub=$MQ sub=$MQ ;;
	memory) pub=$N1 sub=$N2 ;;
	replicated) pub=$R1 sub=$R2 ;;
	esac
	bench "r$r-$t-q1" pubsub --pub-url "$pub" --sub-url "$sub" --qos 1 --persistent --prefix "r$r-$t-q1-" "${PUBSUB[@]}"
}

START=$(date +%s)
ORDER=(mosquitto same cross)
for r in $([ -n "$DURABILITY_ONLY" ] || seq "$ROUNDS"); do
	for i in 0 1 2; do
		t=${ORDER[$(((i + r - 1) % 3))]}
		log "round $r: $t"
		run "$r" "$t"
	done
done

DORDER=(mosquitto_p memory replicated)
for r in $(seq "$ROUNDS"); do
	for i in 0 1 2; do
		t=${DORDER[$(((i + r - 1) % 3))]}
		log "round $r: durability $t"
		durable "$r" "$t"
	done
done

if [ -z "$DURABILITY_ONLY" ]; then
	echo
	echo "Cross-node ÷ same node, and against mosquitto (medians over $ROUNDS rounds):"
	echo
	"$MQLB" bench report --targets mosquitto,same,cross "$OUT" | grep -E '^\|(---|.*metric|.*QoS [01] max rate: (received|latency))'
	echo
	echo "One node ÷ mosquitto:"
	echo
	"$MQLB" bench report --targets mosquitto,same "$OUT" | grep -E '^\|(---|.*metric|.*QoS [01] max rate: (received|latency))'
fi
echo
echo "Durability, QoS 1 to persistent subscribers, cross-node: replicated ÷ memory and ÷ mosquitto:"
echo
"$MQLB" bench report --targets mosquitto_p,memory,replicated "$OUT" | grep -E '^\|(---|.*metric|.*QoS 1 max rate: (received|latency))'
if [ ${#FAILED[@]} -gt 0 ]; then
	log "runs with failures: ${FAILED[*]}"
fi
log "nodes.sh took $(($(date +%s) - START))s; results in $OUT"
