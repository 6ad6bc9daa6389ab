#!/usr/bin/env bash
# Runs `mqlb run -c examples/mqlb.yaml` in front of three local mosquitto
# brokers on 127.0.0.1:18831-18833, like the NGINX/HAProxy seed setups.
# Ctrl-C stops everything this script started.
set -euo pipefail
cd "$(dirname "$0")/.."
for cmd in mosquitto go; do
  command -v "$cmd" >/dev/null || { echo "missing: $cmd (apt-get install -y mosquitto mosquitto-clients)" >&2; exit 1; }
done
dir=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT INT TERM
for port in 18831 18832 18833; do
  printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$port" > "$dir/m$port.conf"
  mosquitto -c "$dir/m$port.conf" > "$dir/m$port.log" 2>&1 &
  pids+=($!)
done
[ -x bin/mqlb ] || go build -o bin/mqlb ./cmd/mqlb
cat <<MSG
mosquitto brokers on 127.0.0.1:18831, 18832, 18833 (logs in $dir)
mqlb on 127.0.0.1:1883, admin on http://127.0.0.1:9090 (dashboard /ui/)
  mosquitto_sub -p 1883 -t 'a/#' -i sub1 -v
  mosquitto_pub -p 1883 -t a/b -m hi -i sub1-pub     # lands by client id
  curl -s localhost:9090/api/v1/upstreams
MSG
bin/mqlb run -c examples/mqlb.yaml &
pids+=($!)
wait "${pids[-1]}"
