#!/usr/bin/env bash
# bench/compare.sh — the same MQTT workloads against one mosquitto broker
# directly, through HAProxy (TCP mode, client-id stick table), through NGINX
# (stream proxy, njs js_preread client id, hash consistent) and through mqlb
# (balance: client_id), in alternating order over several rounds; then one
# table of medians with the ratios of mqlb to each of the others.
#
#   bench/compare.sh [--rounds N] [--quick] [--out DIR] [--idle N] [--conns N] [--duration D]
#
# Linux only (/proc, 127.0.0.0/8 source addresses). Needs mosquitto, haproxy
# (2.4 or later: MQTT sample fetches), nginx with its stream and stream-js
# (njs) modules, and either Go (to build bin/mqlb) or a built bin/mqlb.
# Installs nothing. Every process it starts is stopped on exit, error or
# Ctrl-C. See docs/benchmarks.md for the method.
set -euo pipefail
shopt -s nullglob

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MQLB=$ROOT/bin/mqlb
ROUNDS=3
IDLE=8000          # idle connections held through each proxy (memory)
HOLD=5s            # how long they are held once all are connected
CONNS=2000         # connection ramp at maximum rate
DURATION=20s       # each max-rate pub/sub run
LAT_DURATION=8s    # the fixed-rate latency run
LAT_RATE=500       # its messages per second per publisher (4 publishers)
OUT=""
QUICK=0

usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
while [ $# -gt 0 ]; do
	case $1 in
	--rounds) ROUNDS=$2; shift 2 ;;
	--quick) QUICK=1; shift ;;
	--out) OUT=$2; shift 2 ;;
	--idle) IDLE=$2; shift 2 ;;
	--conns) CONNS=$2; shift 2 ;;
	--duration) DURATION=$2; shift 2 ;;
	-h | --help) usage ;;
	*) echo "compare.sh: unknown argument $1" >&2; usage ;;
	esac
done
if [ $QUICK = 1 ]; then # a smoke run of about a minute, for CI
	ROUNDS=1 IDLE=1000 HOLD=3s CONNS=500 DURATION=4s LAT_DURATION=3s
fi

. "$ROOT/bench/lib.sh"

# ---- prerequisites: say what is missing and how to get it; install nothing
HAPROXY=$(command -v haproxy || true)
[ -z "$HAPROXY" ] && [ -x /usr/sbin/haproxy ] && HAPROXY=/usr/sbin/haproxy
NGINX=$(command -v nginx || true)
[ -z "$NGINX" ] && [ -x /usr/sbin/nginx ] && NGINX=/usr/sbin/nginx
NGX_MODULES=${NGX_MODULES:-/usr/lib/nginx/modules}
missing=()
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
[ -n "$HAPROXY" ] || missing+=(haproxy)
[ -n "$NGINX" ] || missing+=(nginx)
[ -f "$NGX_MODULES/ngx_stream_module.so" ] || missing+=(libnginx-mod-stream)
[ -f "$NGX_MODULES/ngx_stream_js_module.so" ] || missing+=(libnginx-mod-stream-js)
if [ ${#missing[@]} -gt 0 ]; then
	die "missing: ${missing[*]}. Install with: sudo apt-get install -y ${missing[*]}"
fi
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
build_mqlb
[ -r /proc/self/status ] || die "needs Linux /proc"
hv=$("$HAPROXY" -v | sed -n 's/^HAProxy version \([0-9]*\)\.\([0-9]*\).*/\1 \2/p')
read -r hmaj hmin <<<"$hv"
if [ "${hmaj:-0}" -lt 2 ] || { [ "$hmaj" -eq 2 ] && [ "${hmin:-0}" -lt 4 ]; }; then
	die "haproxy $hmaj.$hmin is too old: the MQTT sample fetches need 2.4 or later"
fi
nofile=$(ulimit -n)
if [ "$nofile" != unlimited ] && [ "$nofile" -lt $((2 * IDLE + 500)) ]; then
	die "open-file limit $nofile is too low for --idle $IDLE (a proxied connection costs two descriptors): raise it (ulimit -n) or lower --idle"
fi
MAXCONN=$(( (${nofile/unlimited/40000} - 400) / 2 ))

[ -n "$OUT" ] || OUT=$(mktemp -d /tmp/mqlb-compare.XXXXXX)
mkdir -p "$OUT"
RUN=$OUT/run # configs and logs
mkdir -p "$RUN"

hap() { # one command on HAProxy's stats socket
	exec 4<>"/dev/tcp/127.0.0.1/$HAP_STATS" || return 1
	printf '%s\n' "$*" >&4
	cat <&4
	exec 4>&-
}
metric_sum() { awk -v m="$1" '$1 == m || index($1, m "{") == 1 { s += $2 } END { printf "%.0f\n", s }'; }

# ---- the broker: one mosquitto for everything
MOSQ_PORT=$(free_port)
cat >"$RUN/mosquitto.conf" <<EOF
listener $MOSQ_PORT 127.0.0.1
allow_anonymous true
max_connections -1
persistence false
# no per-connection log lines: 8,000 connections would be measured as logging
log_type error
connection_messages false
# Nagle off, as HAProxy, NGINX and mqlb have it on their sockets and EMQX and
# VerneMQ by default: with mosquitto's default (false) a small PUBLISH it
# sends can wait for the peer's delayed ACK, and the fixed-rate run's max
# (35-60 ms in every column, direct included) and p99 measured that stall
set_tcp_nodelay true
# queue QoS 1 messages for slow subscribers rather than drop them (default 1000)
max_queued_messages 1000000
EOF
"$MOSQUITTO" -c "$RUN/mosquitto.conf" >"$RUN/mosquitto.log" 2>&1 &
MOSQ_PID=$!
PIDS+=("$MOSQ_PID")
wait_port "$MOSQ_PORT" mosquitto

# ---- the proxies, started fresh for each target block
HAP_PORT=$(free_port) HAP_STATS=$(free_port)
cat >"$RUN/haproxy.cfg" <<EOF
# As the seed (EMQX's "MQTT sticky session with HAProxy" post), on one broker,
# without logging and with the inspection the stick rule needs.
global
    nbthread 2
    maxconn $MAXCONN
    stats socket ipv4@127.0.0.1:$HAP_STATS level admin

defaults
    mode tcp
    maxconn $MAXCONN
    timeout connect 5s
    timeout client 600s
    timeout server 600s

frontend mqtt
    bind 127.0.0.1:$HAP_PORT
    # wait for a whole CONNECT before choosing a server (else the stick rule
    # sees an empty buffer and the table stays empty)
    tcp-request inspect-delay 10s
    tcp-request content reject unless { req.payload(0,0),mqtt_is_valid }
    default_backend brokers

backend brokers
    stick-table type string len 32 size 100k expire 30m
    stick on req.payload(0,0),mqtt_field_value(connect,client_identifier)
    server mosquitto 127.0.0.1:$MOSQ_PORT check inter 2s
EOF
"$HAPROXY" -c -q -f "$RUN/haproxy.cfg" || die "haproxy rejects $RUN/haproxy.cfg"

NGX_PORT=$(free_port)
cp "$ROOT/bench/nginx/mqtt.js" "$RUN/mqtt.js"
cat >"$RUN/nginx.conf" <<EOF
# As the seed (NGINX's "Load Balancing MQTT" post: js_preread reads the
# client id from the CONNECT, hash \$mqtt_client_id consistent), on one broker,
# with njs 0.7's js_import instead of the older js_include, two workers (as
# HAProxy's two threads) and a buffered access log that shows the client id.
daemon off;
worker_processes 2;
worker_rlimit_nofile ${nofile/unlimited/40000};
pid $RUN/nginx.pid;
error_log $RUN/nginx-error.log warn;
load_module $NGX_MODULES/ngx_stream_module.so;
load_module $NGX_MODULES/ngx_stream_js_module.so;
events { worker_connections $MAXCONN; }
stream {
    js_import mqtt from $RUN/mqtt.js;
    js_set \$mqtt_client_id mqtt.getClientId;
    log_format mqtt '\$remote_addr [\$time_local] \$protocol \$status \$bytes_received \$bytes_sent \$upstream_addr \$mqtt_client_id';
    upstream brokers {
        hash \$mqtt_client_id consistent;
        server 127.0.0.1:$MOSQ_PORT;
    }
    server {
        listen 127.0.0.1:$NGX_PORT;
        preread_timeout 10s;
        js_preread mqtt.preread;
        proxy_pass brokers;
        proxy_connect_timeout 5s;
        proxy_timeout 600s;
        access_log $RUN/nginx-access.log mqtt buffer=64k flush=1s;
    }
}
EOF
"$NGINX" -t -q -p "$RUN" -e "$RUN/nginx-error.log" -c "$RUN/nginx.conf" || die "nginx rejects $RUN/nginx.conf"

MQLB_PORT=$(free_port) MQLB_ADMIN=$(free_port)
cat >"$RUN/mqlb.yaml" <<EOF
listeners:
  - { name: mqtt, address: "127.0.0.1:$MQLB_PORT", upstream: brokers }
upstreams:
  brokers:
    balance: client_id
    health_check: { type: mqtt, interval: 2s, timeout: 1s }
    servers:
      - { name: mosquitto, address: "127.0.0.1:$MOSQ_PORT" }
access_log: { path: "off" }
limits: { shutdown_grace: 1s }
admin: { address: "127.0.0.1:$MQLB_ADMIN" }
log: { level: warn }
EOF
"$MQLB" check -c "$RUN/mqlb.yaml" >/dev/null || die "mqlb rejects $RUN/mqlb.yaml"

PROXY_PID=""
start_proxy() { # target → sets URL, PROXY_PID, WATCH
	case $1 in
	direct)
		URL=mqtt://127.0.0.1:$MOSQ_PORT PROXY_PID="" ;;
	haproxy)
		"$HAPROXY" -db -f "$RUN/haproxy.cfg" >>"$RUN/haproxy.log" 2>&1 &
		PROXY_PID=$!
		URL=mqtt://127.0.0.1:$HAP_PORT ;;
	nginx) # the master; the bench counts its workers with it
		"$NGINX" -p "$RUN" -e "$RUN/nginx-error.log" -c "$RUN/nginx.conf" >>"$RUN/nginx.log" 2>&1 &
		PROXY_PID=$!
		URL=mqtt://127.0.0.1:$NGX_PORT ;;
	mqlb)
		"$MQLB" run -c "$RUN/mqlb.yaml" >>"$RUN/mqlb.log" 2>&1 &
		PROXY_PID=$!
		URL=mqtt://127.0.0.1:$MQLB_PORT ;;
	esac
	WATCH="broker=$MOSQ_PID"
	if [ -n "$PROXY_PID" ]; then
		PIDS+=("$PROXY_PID")
		WATCH="proxy=$PROXY_PID,$WATCH"
		wait_port "${URL##*:}" "$1"
	fi
	# the whole path works: one real CONNECT/CONNACK
	for _ in $(seq 50); do
		"$MQLB" bench conn --url "$URL" --clients 1 --prefix "probe-" >/dev/null 2>&1 && return 0
		sleep 0.2
	done
	die "no MQTT connection through $1 at $URL (see $RUN)"
}
stop_proxy() {
	[ -n "$PROXY_PID" ] || return 0
	stop_pid "$PROXY_PID"
	forget "$PROXY_PID"
	PROXY_PID=""
}

# ---- the workloads
SRC=127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5,127.0.0.6,127.0.0.7,127.0.0.8,127.0.0.9
PUBSUB=(--publishers 4 --subscribers 4 --topics 4 --size 256 --drain 5s)

# snapshot what the proxy says about itself (mqlb: /metrics; HAProxy: info, pools)
snapshot() { # target file-prefix
	case $1 in
	mqlb)
		http_get "$MQLB_ADMIN" /metrics >"$2.metrics"
		http_get "$MQLB_ADMIN" "/debug/pprof/heap?gc=1&debug=1" >"$2.heap" || true ;;
	haproxy) { hap show info; hap show pools; } >"$2.haproxy" ;;
	esac
}
held_count() { # target → connections the proxy holds
	case $1 in
	mqlb) http_get "$MQLB_ADMIN" /metrics | metric_sum mqlb_connections_active ;;
	haproxy) hap show info | awk -F': ' '$1 == "CurrConns" { print $2 }' ;;
	nginx) established "$NGX_PORT" ;;
	*) echo "$IDLE" ;;
	esac
}

idle_run() { # round target: hold IDLE connections; snapshot the proxy before and while held
	local name=$1-$2-idle n=0 rc=0
	snapshot "$2" "$OUT/$name-before"
	"$MQLB" bench conn --url "$URL" --clients "$IDLE" --hold "$HOLD" --keepalive 0 --source-addrs "$SRC" \
		--watch "$WATCH" --prefix "$1-$2-idle-" --json "$OUT/$name.json" >"$OUT/$name.txt" 2>&1 &
	local bpid=$!
	PIDS+=("$bpid")
	for _ in $(seq 300); do
		n=$(held_count "$2" || echo 0)
		[ "${n:-0}" -ge "$IDLE" ] && break
		sleep 0.1
	done
	sleep 1
	snapshot "$2" "$OUT/$name-held"
	wait "$bpid" || rc=$?
	forget "$bpid"
	bench_status "$name" $rc
	# let the proxy and the broker finish closing before the next workload
	for _ in $(seq 100); do [ "$(held_count_after "$2")" -eq 0 ] && break; sleep 0.1; done
	sleep 2
}
established() { # port → established TCP connections to it (from /proc/net/tcp)
	awk -v p="$(printf '%04X' "$1")" '$4 == "01" && substr($2, index($2, ":") + 1) == p { n++ } END { print n + 0 }' /proc/net/tcp
}
timewait() { # TCP sockets in TIME_WAIT (/proc/net/tcp): each proxied connection
	# leaves one on the proxy → broker address pair, and tens of thousands
	# of them likely make connect costlier for whichever target runs next
	awk '$4 == "06" { n++ } END { print n + 0 }' /proc/net/tcp
}
held_count_after() { # like held_count, but 0 for direct
	case $1 in
	direct) echo 0 ;;
	*) held_count "$1" || echo 0 ;;
	esac
}

check_stick_table() { # round: the table must hold the client ids just connected
	local key=$1-haproxy-conn-0 out
	out=$(hap "show table brokers key $key")
	echo "$out" >"$OUT/$1-haproxy-stick-table.txt"
	hap "show table brokers" | sed -n 1p >>"$OUT/$1-haproxy-stick-table.txt"
	grep -q "key=$key " <<<"$out" || die "HAProxy's stick table has no entry for $key: the stick rule is not working (see $OUT/$1-haproxy-stick-table.txt)"
	log "  stick table: $(sed -n 's/^# table: brokers, //p' <<<"$out" | sed -n 1p); $key → $(grep -o 'server_key=[^ ]*' <<<"$out")"
}

check_access_log() { # round: NGINX's access log must show the client ids just connected
	local id=$1-nginx-conn-0 line=""
	for _ in $(seq 50); do # the log is buffered, flushed every second
		line=$(grep -m1 " $id\$" "$RUN/nginx-access.log" || true)
		[ -n "$line" ] && break
		sleep 0.1
	done
	[ -n "$line" ] || die "NGINX's access log has no line for client id $id: js_preread is not reading the CONNECT (see $RUN/nginx-access.log, $RUN/nginx-error.log)"
	local n=0
	for _ in $(seq 50); do # until every ramp connection has its line (or 5 s)
		n=$(grep -c " $1-nginx-conn-[0-9]*\$" "$RUN/nginx-access.log" || true)
		[ "$n" -ge "$CONNS" ] && break
		sleep 0.1
	done
	{ echo "$n of $CONNS ramp connections logged with their client id"; echo "$line"; } >"$OUT/$1-nginx-access-log.txt"
	log "  access log: $n of $CONNS ramp client ids; $line"
}

run_target() { # round target
	local r=$1 t=$2
	log "round ${r#r}: $t"
	start_proxy "$t"
	idle_run "$r" "$t"
	log "  TIME_WAIT sockets before the connect ramp: $(timewait | tee "$OUT/$r-$t-conn.timewait")"
	bench "$r-$t-conn" conn --url "$URL" --clients "$CONNS" --rate 0 --concurrency 100 --source-addrs "$SRC" \
		--watch "$WATCH" --prefix "$r-$t-conn-"
	[ "$t" = haproxy ] && check_stick_table "$r"
	[ "$t" = nginx ] && check_access_log "$r"
	bench "$r-$t-q0" pubsub --url "$URL" "${PUBSUB[@]}" --qos 0 --duration "$DURATION" --watch "$WATCH" --prefix "$r-$t-q0-"
	bench "$r-$t-q1" pubsub --url "$URL" "${PUBSUB[@]}" --qos 1 --duration "$DURATION" --watch "$WATCH" --prefix "$r-$t-q1-"
	bench "$r-$t-lat" pubsub --url "$URL" "${PUBSUB[@]}" --qos 1 --rate "$LAT_RATE" --duration "$LAT_DURATION" \
		--watch "$WATCH" --prefix "$r-$t-lat-"
	stop_proxy
}

# ---- record the machine
{
	echo "date: $(date -u +%FT%TZ)"
	echo "cpus: $(nproc) ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo))"
	echo "memory: $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
	echo "kernel: $(uname -sr)"
	echo "open files: $nofile"
	echo "go: $(command -v go >/dev/null && go version || echo none)"
	echo "mqlb: $("$MQLB" version)"
	if command -v git >/dev/null && git -C "$ROOT" rev-parse HEAD >/dev/null 2>&1; then
		echo "tree: $(git -C "$ROOT" rev-parse --short HEAD), uncommitted: $(git -C "$ROOT" status --porcelain -- cmd internal | wc -l) files"
	fi
	echo "haproxy: $("$HAPROXY" -v | sed -n 1p)"
	echo "nginx: $("$NGINX" -v 2>&1 | sed -n 1p); njs: $(dpkg-query -W -f '${Version}' libnginx-mod-stream-js 2>/dev/null || echo '?')"
	echo "mosquitto: $("$MOSQUITTO" -h 2>/dev/null | sed -n 1p)"
	echo "rounds: $ROUNDS; idle: $IDLE held $HOLD; conn: $CONNS; pub/sub: 4 pub × 4 sub, 4 topics, 256 B, $DURATION; latency run: 4 × $LAT_RATE msg/s, $LAT_DURATION"
} >"$OUT/env.txt"
log "results in $OUT"
sed 's/^/  /' "$OUT/env.txt" >&2

START=$SECONDS
TARGETS=(direct haproxy nginx mqlb)
for ((i = 0; i < ROUNDS; i++)); do
	for ((j = 0; j < ${#TARGETS[@]}; j++)); do # rotate the order each round
		run_target "r$((i + 1))" "${TARGETS[$(((i + j) % ${#TARGETS[@]}))]}"
	done
done

# ---- the table, and where mqlb's memory per idle connection goes
"$MQLB" bench report --targets direct,haproxy,nginx,mqlb "$OUT" | tee "$OUT/table.md"
{
	echo
	echo "mqlb, per idle connection held (from /metrics, held minus before, ÷ $IDLE):"
	for f in "$OUT"/r*-mqlb-idle-held.metrics; do
		b=${f%-held.metrics}-before.metrics
		printf '  %s:' "$(basename "${f%-idle-held.metrics}")"
		for m in go_goroutines go_memstats_stack_inuse_bytes go_memstats_heap_inuse_bytes go_memstats_heap_objects \
			go_memstats_mspan_inuse_bytes go_memstats_sys_bytes process_resident_memory_bytes; do
			printf ' %s %.2f' "${m#go_memstats_}" "$(echo "$(metric_sum $m <"$f") $(metric_sum $m <"$b") $IDLE" | awk '{ print ($1 - $2) / $3 }')"
		done
		echo
	done
	last=$(ls "$OUT"/r*-mqlb-idle-held.heap 2>/dev/null | tail -1)
	if [ -n "$last" ] && [ -s "$last" ] && command -v go >/dev/null; then
		echo "mqlb, live heap while held minus before, by allocation site ($(basename "$last"); sampled every 512 KiB, so coarse):"
		(cd "$ROOT" && go tool pprof -sample_index=inuse_space -top -nodecount=15 \
			-base "${last%-held.heap}-before.heap" "$MQLB" "$last" 2>/dev/null | sed -n '/flat%/,$p' | sed 's/^/  /') || true
	fi
	echo "HAProxy, pool memory per idle connection (show pools, held minus before, ÷ $IDLE):"
	for f in "$OUT"/r*-haproxy-idle-held.haproxy; do
		b=${f%-held.haproxy}-before.haproxy
		h=$(sed -n 's/^Total: .* \([0-9]*\) bytes allocated.*/\1/p' "$f") p=$(sed -n 's/^Total: .* \([0-9]*\) bytes allocated.*/\1/p' "$b")
		printf '  %s: %.0f bytes\n' "$(basename "${f%-idle-held.haproxy}")" "$(echo "${h:-0} ${p:-0} $IDLE" | awk '{ print ($1 - $2) / $3 }')"
	done
} | tee "$OUT/memory.txt"
log "compare.sh took $((SECONDS - START))s; results, logs and raw JSON in $OUT"
if [ ${#FAILED[@]} -gt 0 ]; then
	log "runs with failures: ${FAILED[*]}"
	exit 1
fi
