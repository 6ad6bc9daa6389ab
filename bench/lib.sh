# bench/lib.sh — shell helpers shared by the benchmark scripts (sourced).
# Uses: ROOT, MQLB, OUT and RUN (set by the script before calling them).

log() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }
die() { log "$(basename "$0"): $*"; exit 1; }

# build_mqlb builds bin/mqlb when Go is there, or checks that one exists.
build_mqlb() {
	if command -v go >/dev/null; then
		log "building bin/mqlb"
		(cd "$ROOT" && go build -o bin/mqlb ./cmd/mqlb) || die "go build failed"
	elif [ ! -x "$MQLB" ]; then
		die "missing: bin/mqlb and Go to build it (https://go.dev/dl/, then: go build -o bin/mqlb ./cmd/mqlb)"
	fi
}

# ---- process bookkeeping: everything started (PIDS) is stopped on the way
# out, on exit, error or Ctrl-C
PIDS=()
stop_pid() { # stop one process we started, by its id
	local pid=$1
	kill "$pid" 2>/dev/null || return 0
	for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	kill -9 "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
	[ $rc = 0 ] || log "stopped everything this script started (exit $rc); results so far in $OUT"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
forget() { local p; local keep=(); for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done; PIDS=("${keep[@]}"); }

# ---- small helpers
USED_PORTS=" "
# listening ports come from below the ephemeral range, which the 8,000
# client and upstream connections use up to a good part of
EPH_LOW=$(awk '{ print $1 }' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
free_port() {
	local p
	while :; do
		p=$((10000 + RANDOM % (EPH_LOW - 10000)))
		case $USED_PORTS in *" $p "*) continue ;; esac
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then USED_PORTS+="$p "; echo "$p"; return; fi
	done
}
wait_port() { # port, what[, seconds (default 10)]
	for _ in $(seq $((${3:-10} * 10))); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
	die "$2 is not listening on 127.0.0.1:$1 within ${3:-10} s (see $RUN)"
}
http_get() { # port path → body
	exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
	printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$2" >&3
	sed '1,/^\r$/d' <&3
	exec 3>&-
}

# ---- running the load generator
FAILED=()
bench() { # name args... — one bench run, its summary in OUT/name.txt and its result in OUT/name.json
	local name=$1 rc=0
	shift
	"$MQLB" bench "$@" --json "$OUT/$name.json" >"$OUT/$name.txt" 2>&1 || rc=$?
	bench_status "$name" $rc
}
bench_status() { # name status: 3 (the run saw failures) is recorded, anything else but 0 is fatal
	case $2 in
	0) ;;
	3) FAILED+=("$1"); log "  $1 saw failures (see $OUT/$1.txt)" ;;
	*) cat "$OUT/$1.txt" >&2; die "$1: mqlb bench exited $2" ;;
	esac
}

