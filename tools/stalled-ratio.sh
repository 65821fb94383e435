#!/bin/sh
# tools/stalled-ratio.sh - fcmd's intake while the upstream answers nothing,
# against the bare h2o server's, in one run.
#
# The mock upstream holds every request for an hour (LATENCY_MS), so no
# target leaves the queue while wrk drives /gcm/send: what is measured is
# intake alone (parse, queue, answer) with the sender's connections open and
# idle, the state a client sees when FCM stalls.  Then the same wrk run
# against tools/baseline, and the ratio.  fcmd stops with a shutdown timeout
# of a second at the end: its pending targets are the point, not something
# to deliver.
# Environment: FCMD (./fcmd: another build to compare), DURATION (5 s),
# CONNECTIONS (64), WORKERS (2), PORT (5750), QUEUE (2000000 targets a
# worker, so the queue never refuses within DURATION).
set -eu
cd "$(dirname "$0")/.."

FCMD=${FCMD:-./fcmd}
DURATION=${DURATION:-5}
CONNECTIONS=${CONNECTIONS:-64}
WORKERS=${WORKERS:-2}
PORT=${PORT:-5750}
QUEUE=${QUEUE:-2000000}
LATENCY_MS=${LATENCY_MS:-3600000}
. tools/bench-lib.sh

wrk_run() { # URL OUTPUT
    wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" -s tools/wrk-send.lua "$1" >"$2" 2>&1
}
non200() { awk '/Non-2xx/ {n = $NF} END {print n + 0}' "$1"; }

tools/baseline --port "$PORT" --workers "$WORKERS" &
pids="$pids $!"
poll 100 curl -sf "http://127.0.0.1:$PORT/"
wrk_run "http://127.0.0.1:$PORT/gcm/send" "$work/baseline.wrk"
kill -TERM $pids 2>/dev/null || true
wait 2>/dev/null || true
pids=

openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost -addext subjectAltName=DNS:localhost \
    -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
tools/mock-upstream --port 0 --latency-ms "$LATENCY_MS" --tls-cert "$work/cert.pem" --tls-key "$work/key.pem" \
    >"$work/mock.out" &
pids="$pids $!"
poll 100 grep -q listening "$work/mock.out"
mock_port=$(sed -n 's/.*:\([0-9]*\) (https).*/\1/p' "$work/mock.out")
printf 'bench\n' >"$work/apikey"
"$FCMD" --port "$((PORT + 1))" --host 127.0.0.1 --workers "$WORKERS" --logto "$work/fcmd.log" \
    --queue-size "$QUEUE" --shutdown-timeout 1 --ca-file "$work/cert.pem" --apikey-file "$work/apikey" \
    --gcm-url "https://localhost:$mock_port/fcm/send" &
pids="$pids $!"
poll 200 curl -sf "http://127.0.0.1:$((PORT + 1))/readyz"
wrk_run "http://127.0.0.1:$((PORT + 1))/gcm/send" "$work/fcmd.wrk"
pending=$(curl -s "http://127.0.0.1:$((PORT + 1))/gcm/report" | sed -n 's/.*"pending":\([0-9]*\).*/\1/p')
held=$(curl -s --cacert "$work/cert.pem" "https://localhost:$mock_port/stats?summary" |
    sed -n 's/.*"requests":\([0-9]*\).*/\1/p')

base=$(rps "$work/baseline.wrk")
fcmd=$(rps "$work/fcmd.wrk")
[ -n "$base" ] && [ -n "$fcmd" ] && [ -n "$pending" ] || { echo "stalled-ratio: a figure is missing" >&2; exit 1; }
printf 'stalled upstream (%s ms) | %s workers | wrk -t2 -c%s -d%ss | %s\n' "$LATENCY_MS" "$WORKERS" \
    "$CONNECTIONS" "$DURATION" "$FCMD"
printf '%-40s %s\n' "baseline ingress (requests/s)" "$base"
printf '%-40s %s\n' "fcmd ingress (requests/s)" "$fcmd"
printf '%-40s %s\n' "fcmd / baseline" "$(awk -v a="$fcmd" -v b="$base" 'BEGIN {printf "%.2f", a / b}')"
printf '%-40s %s\n' "answers not 200 (wrk)" "$(non200 "$work/fcmd.wrk")"
printf '%-40s %s\n' "pending at the end; requests the mock holds" "${pending:-?}; ${held:-?}"
