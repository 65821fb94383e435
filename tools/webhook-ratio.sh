#!/bin/sh
# tools/webhook-ratio.sh - delivery with the webhook told of every outcome
# (--webhook-events all) against delivery without a webhook, in one run.
#
# Each round runs tools/bench.sh twice, the order turning each round: once
# as it is, once with FCMD_ARGS naming a receiver (tools/webhook_sink.py,
# which acknowledges every batch at once and counts requests and events).
# It prints each run's end-to-end delivered targets/s and CPU seconds per
# 1,000 targets, the ratios to the run without, the events the receiver got
# per request, and the median ratios.
# Environment: ROUNDS (3), and what tools/bench.sh reads (DURATION 5 here,
# LATENCY_MS 200, WORKERS 2, PORT 5650); SINK_PORT (PORT + 50).
set -eu
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
export DURATION=${DURATION:-5}
PORT=${PORT:-5650}
SINK_PORT=${SINK_PORT:-$((PORT + 50))}
. tools/bench-lib.sh

/usr/bin/python3 tools/webhook_sink.py "$SINK_PORT" &
pids="$pids $!"
poll 100 curl -sf "http://127.0.0.1:$SINK_PORT/stats"
sink() { curl -s "http://127.0.0.1:$SINK_PORT/stats" | sed -n "s/.*\"$1\": \([0-9]*\).*/\1/p"; }
figure() { sed -n "s/^$2 *\([0-9.]*\).*/\1/p" "$1"; }

run() { # MODE (none or hook) ROUND
    if [ "$1" = hook ]; then
        r0=$(sink requests) e0=$(sink events)
        FCMD_ARGS="--webhook http://127.0.0.1:$SINK_PORT/ --webhook-events all" tools/bench.sh >"$work/$1.$2"
        echo $(($(sink requests) - r0)) >"$work/requests.$2"
        echo $(($(sink events) - e0)) >"$work/events.$2"
    else
        tools/bench.sh >"$work/$1.$2"
    fi
}

printf 'webhook told of everything or no webhook | %s rounds | tools/bench.sh DURATION=%s\n' "$ROUNDS" "$DURATION"
printf '%-6s %12s %12s %12s %12s %10s %10s %12s\n' round "none t/s" "hook t/s" "none cpu/1k" "hook cpu/1k" \
    "rate" "cpu" "events/req"
r=1
while [ $r -le "$ROUNDS" ]; do
    if [ $((r % 2)) -eq 1 ]; then run none $r; run hook $r; else run hook $r; run none $r; fi
    nt=$(figure "$work/none.$r" "end-to-end delivered targets\\/s")
    ht=$(figure "$work/hook.$r" "end-to-end delivered targets\\/s")
    nc=$(figure "$work/none.$r" "CPU seconds per 1,000 targets (fcmd)")
    hc=$(figure "$work/hook.$r" "CPU seconds per 1,000 targets (fcmd)")
    req=$(cat "$work/requests.$r") ev=$(cat "$work/events.$r")
    awk -v r=$r -v nt="$nt" -v ht="$ht" -v nc="$nc" -v hc="$hc" -v req="$req" -v ev="$ev" 'BEGIN {
        printf "%-6s %12d %12d %12.3f %12.3f %10.3f %10.3f %12.1f\n", r, nt, ht, nc, hc, ht / nt, hc / nc,
            (req > 0 ? ev / req : 0) }' | tee -a "$work/rows"
    r=$((r + 1))
done
median() { awk -v c="$1" '{print $c}' "$work/rows" | sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
printf 'median: delivery rate with the webhook %s of without, CPU per target %s, %s events per request\n' \
    "$(median 6)" "$(median 7)" "$(median 8)"
