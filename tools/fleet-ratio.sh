#!/bin/sh
# tools/fleet-ratio.sh - fcmd's ingress in fleet mode (--redis, counters only)
# as a ratio of its ingress without it, and what Redis spends on it.
#
# Runs ROUNDS rounds back to back, each one tools/bench.sh without Redis and
# then one with REDIS=on (a redis-server with appendonly yes, appendfsync
# everysec), prints every round's requests/s, ratio and Redis' CPU, and the
# median ratio.  Environment: ROUNDS (3), and what tools/bench.sh reads
# (DURATION is 5 s here unless set).
set -eu
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
export DURATION
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM

run() { # REDIS -> the bench's output in $work/out
    REDIS=$1 tools/bench.sh >"$work/out" 2>&1 || { cat "$work/out" >&2; exit 1; }
}
rate() {
    r=$(awk '/^fcmd ingress/ {print $4}' "$work/out")
    case $r in '' | *[!0-9]*)
        echo "fleet-ratio: no ingress figure" >&2
        exit 1
        ;;
    esac
    echo "$r"
}

i=1
while [ "$i" -le "$ROUNDS" ]; do
    run off
    off=$(rate)
    [ "$off" -gt 0 ] || { echo "fleet-ratio: no requests without Redis" >&2; exit 1; }
    run on
    on=$(rate)
    cpu=$(sed -n 's/^Redis CPU, from wrk to drained *//p' "$work/out")
    [ -n "$cpu" ] || { echo "fleet-ratio: no Redis CPU figure" >&2; exit 1; }
    pct=$((on * 100 / off))
    echo "$pct" >>"$work/ratios"
    echo "round $i: without Redis $off requests/s | with --redis $on requests/s ($pct%) | Redis CPU $cpu"
    i=$((i + 1))
done
echo "median ratio to no Redis over $ROUNDS round(s): $(sort -n "$work/ratios" |
    awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : int((v[NR / 2] + v[NR / 2 + 1]) / 2)}')% (target: 90%)"
