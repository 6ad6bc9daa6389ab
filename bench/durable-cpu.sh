#!/usr/bin/env bash
# bench/durable-cpu.sh — CPU of a 2-node `mqlb up` per delivered message at
# QoS 1 to persistent subscribers (cross-node), for A/B comparisons of
# builds: each round runs every binary given with sessions.durability
# replicated, then the first one with memory, alternating, and prints
# msg/s and the whole process's CPU (user + system) per delivered message.
#
#   bench/durable-cpu.sh [--rounds N] [--duration D] [--out DIR] [BINARY...]
#
# BINARY defaults to bin/mqlb (built). Needs nothing but the binaries.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
MQLB=$ROOT/bin/mqlb
ROUNDS=3 DURATION=8s OUT=
while [ $# -gt 0 ]; do
	case $1 in
	--rounds) ROUNDS=$2; shift 2 ;;
	--duration) DURATION=$2; shift 2 ;;
	--out) OUT=$2; shift 2 ;;
	-h | --help) sed -n '2,10p' "$0"; exit 0 ;;
	--*) echo "unknown option $1" >&2; exit 2 ;;
	*) break ;;
	esac
done
[ -n "$OUT" ] || OUT=$(mktemp -d /tmp/mqlb-durcpu.XXXXXX)
RUN=$OUT/run
mkdir -p "$RUN"
. "$ROOT/bench/lib.sh"
BINS=("$@")
if [ ${#BINS[@]} = 0 ]; then
	build_mqlb
	BINS=("$MQLB")
fi
TICK=$(getconf CLK_TCK)

one() { # binary durability tag
	local bin=$1 dur=$2 tag=$3 port up t0 t1 n rate
	port=$(free_port)
	rm -rf "$RUN/data-$tag"
	"$bin" up --nodes 2 --durability "$dur" --node-port "$port" --listen "127.0.0.1:$(free_port)" \
		--admin "127.0.0.1:$(free_port)" --data "$RUN/data-$tag" >"$RUN/up-$tag.log" 2>&1 &
	up=$!
	PIDS+=("$up")
	for _ in $(seq 300); do grep -q "Ctrl-C stops everything" "$RUN/up-$tag.log" && break; sleep 0.2; done
	t0=$(awk '{print $14+$15}' "/proc/$up/stat")
	"$bin" bench pubsub --pub-url "mqtt://127.0.0.1:$port" --sub-url "mqtt://127.0.0.1:$((port + 1))" \
		--qos 1 --persistent --prefix "$tag-" --publishers 4 --subscribers 4 --topics 4 --size 256 \
		--drain 10s --duration "$DURATION" >"$OUT/$tag.txt" 2>&1
	t1=$(awk '{print $14+$15}' "/proc/$up/stat")
	stop_pid "$up"
	forget "$up"
	n=$(grep -o "received *[0-9,]*" "$OUT/$tag.txt" | tr -dc 0-9)
	rate=$(grep -o "[0-9,]* msg/s" "$OUT/$tag.txt" | head -1)
	echo "$tag: $rate, CPU $(((t1 - t0) * 1000000 / TICK / (n > 0 ? n : 1))) µs per message ($n messages)"
}

for r in $(seq "$ROUNDS"); do
	i=0
	for b in "${BINS[@]}"; do
		i=$((i + 1))
		one "$b" replicated "r$r-bin$i-replicated"
	done
	one "${BINS[0]}" memory "r$r-bin1-memory"
done | tee "$OUT/summary.txt"
log "results in $OUT"
