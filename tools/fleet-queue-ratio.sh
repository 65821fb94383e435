#!/bin/sh
# tools/fleet-queue-ratio.sh - fcmd with the queue in Redis (--redis-queue)
# against the local queue, in the same run: ingress, end-to-end delivery, and
# what Redis spends.
#
# Starts a redis-server (appendonly yes, appendfsync everysec) on a free
# loopback port, then runs ROUNDS rounds back to back, each tools/bench.sh
# with the local queue and then with --redis URL --redis-queue, and prints
# every round's figures and the median ratios.  Both runs take the same
# MESSAGES requests, so "end-to-end delivered targets/s" (all of them at the
# upstream, over the time from the first request) compares like with like.
# Redis' CPU is read from /proc over each queue run and divided by the pushes
# it took (the run's idle parts add little: Redis sleeps), and that cost at
# the measured ingress rate is given as a share of one core.
# Environment: ROUNDS (3), REDIS_FSYNC (everysec), MESSAGES (100000), and what
# tools/bench.sh reads (DURATION, a cap here, 30 s; LATENCY_MS 200).
set -eu
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
REDIS_FSYNC=${REDIS_FSYNC:-everysec}
DURATION=${DURATION:-30}
MESSAGES=${MESSAGES:-100000}
export DURATION MESSAGES
work=$(mktemp -d)
redis_pid=

cleanup() {
    [ -z "$redis_pid" ] || kill -TERM "$redis_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

port=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --dir "$work" --save "" --appendonly yes \
    --appendfsync "$REDIS_FSYNC" >"$work/redis.log" 2>&1 &
redis_pid=$!
i=0
until redis-cli -p "$port" ping >/dev/null 2>&1; do
    i=$((i + 1))
    [ $i -lt 200 ] || { echo "fleet-queue-ratio: redis-server did not start" >&2; exit 1; }
    sleep 0.05
done
ticks() { awk '{print $14 + $15}' /proc/"$redis_pid"/stat; }
hz=$(getconf CLK_TCK)

run() { # label FCMD_ARGS -> figures in $work/label.out
    FCMD_ARGS=$2 tools/bench.sh >"$work/$1.out" 2>&1 || { cat "$work/$1.out" >&2; exit 1; }
}
figure() { # file label-prefix column
    awk -v p="$2" -v c="$3" 'index($0, p) == 1 {print $c}' "$1"
}

i=1
while [ "$i" -le "$ROUNDS" ]; do
    run local ""
    t0=$(ticks)
    run queue "--redis redis://127.0.0.1:$port --redis-queue"
    t1=$(ticks)
    left=$(redis-cli -p "$port" xlen fcmd:queue)
    [ "$left" = 0 ] || { echo "fleet-queue-ratio: $left entries left in the stream" >&2; exit 1; }
    li=$(figure "$work/local.out" "fcmd ingress" 4)
    qi=$(figure "$work/queue.out" "fcmd ingress" 4)
    ld=$(figure "$work/local.out" "end-to-end delivered" 4)
    qd=$(figure "$work/queue.out" "end-to-end delivered" 4)
    qa=$(figure "$work/queue.out" "accepted targets" 3)
    for v in "$li" "$qi" "$ld" "$qd" "$qa"; do
        case $v in '' | *[!0-9]*) echo "fleet-queue-ratio: a figure is missing" >&2; cat "$work/queue.out" >&2; exit 1 ;; esac
    done
    echo $((qi * 100 / (li > 0 ? li : 1))) >>"$work/ingress"
    echo $((qd * 100 / (ld > 0 ? ld : 1))) >>"$work/delivery"
    redis_us=$(awk -v t=$((t1 - t0)) -v hz="$hz" -v n="$qa" 'BEGIN {if (n > 0) printf "%.1f", t / hz / n * 1e6}')
    redis_core=$(awk -v us="$redis_us" -v r="$qi" 'BEGIN {printf "%d", us * r / 1e4}')
    echo "round $i: ingress local $li, redis queue $qi req/s ($((qi * 100 / (li > 0 ? li : 1)))%) |" \
        "delivered local $ld, redis queue $qd targets/s ($((qd * 100 / (ld > 0 ? ld : 1)))%) |" \
        "redis CPU ${redis_us} us a push, ${redis_core}% of a core at that ingress"
    i=$((i + 1))
done
median() { sort -n "$1" | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : int((v[NR / 2] + v[NR / 2 + 1]) / 2)}'; }
echo "median over $ROUNDS round(s): ingress $(median "$work/ingress")% of the local queue's," \
    "end-to-end delivery $(median "$work/delivery")%"
