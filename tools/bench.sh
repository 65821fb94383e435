#!/bin/sh
# tools/bench.sh - what `make bench` runs: fcmd's ingress, latency, delivery,
# memory and CPU on this machine, in one table.
#
# It starts the bare-h2o baseline (tools/baseline, the ingress ceiling) and
# drives it with wrk, then the mock upstream (HTTP/2 over TLS, LATENCY_MS per
# request) and fcmd, drives /gcm/send the same way (the GoCM form body),
# waits until the mock has every accepted message, and prints the figures.
# Environment: DURATION (10 s), CONNECTIONS (64), TOKENS per request (1),
# LATENCY_MS (200), WORKERS (2), UPSTREAM_CONNECTIONS (16; "default" for
# fcmd's own), UPSTREAM (legacy or v1), SPOOL (off, never, batch or always),
# PORT (5650), MESSAGES (unset: fcmd's wrk run stops once fcmd has accepted
# this many requests, or after DURATION), IDLE_TIMEOUT (fcmd's
# --upstream-idle-timeout, 2 s, so that "RSS after the drain" is read with the
# idle upstream connections closed), STEADY (3 s: a light steady load, run
# against the bare server and again while fcmd delivers its backlog), REDIS
# (off, or on: fleet mode's counters in a redis-server with appendonly yes,
# appendfsync everysec, on REDIS_PORT, PORT + 1000; its CPU is printed too),
# FCMD_ARGS (more options for fcmd, split on spaces: tools/fleet-queue-ratio.sh
# passes --redis URL --redis-queue).  Reports are read with ?scope=local, so
# with --redis they are this instance's at once, not a flush old.  The steady
# load also runs against the bare server (on PORT + 2) while h2load drives the
# mock at the rate fcmd delivered: the tail of a server on a machine as busy.
set -eu
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-64}
TOKENS=${TOKENS:-1}
LATENCY_MS=${LATENCY_MS:-200}
WORKERS=${WORKERS:-2}
UPSTREAM_CONNECTIONS=${UPSTREAM_CONNECTIONS:-16}
UPSTREAM=${UPSTREAM:-legacy}
SPOOL=${SPOOL:-off}
PORT=${PORT:-5650}
MESSAGES=${MESSAGES:-}
WRK_THREADS=${WRK_THREADS:-2}
IDLE_TIMEOUT=${IDLE_TIMEOUT:-2}
STEADY=${STEADY:-3}
REDIS=${REDIS:-off}
REDIS_PORT=${REDIS_PORT:-$((PORT + 1000))}
export TOKENS
. tools/bench-lib.sh

ms() { date +%s%3N; }
field() { sed -n "s/.*\"$1\":\([0-9-]*\).*/\1/p"; }
tree() { echo "$1 $(cat /proc/"$1"/task/"$1"/children 2>/dev/null)"; }
# Sum of a /proc/PID/status field (kB) over a process tree.
kb() { s=0; for p in $(tree "$1"); do v=$(awk -v f="$2:" '$1 == f {print $2}' /proc/"$p"/status 2>/dev/null); s=$((s + ${v:-0})); done; echo $s; }
# CPU clock ticks (user + system) of a process tree.
ticks() { s=0; for p in $(tree "$1"); do v=$(awk '{print $14 + $15}' /proc/"$p"/stat 2>/dev/null); s=$((s + ${v:-0})); done; echo $s; }
wrk_run() { # URL OUTPUT [MESSAGES]
    MESSAGES=${3:-} WRK_THREADS=$WRK_THREADS exec wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${DURATION}s" -s tools/wrk-send.lua "$1" >"$2" 2>&1
}
# A steady, light load: 8 connections, each a request per 10 ms (at most 800 a
# second), for STEADY seconds: the latency of /gcm/send while the worker is busy
# with something else, against the bare server's under the same load.
steady_run() { # URL OUTPUT
    DELAY_MS=10 exec wrk -t1 -c8 -d"${STEADY}s" -s tools/wrk-send.lua "$1" >"$2" 2>&1
}

# Runs a command; prints the CPU seconds it used (getrusage of the child: finer than clock ticks).
cpu_of() {
    /usr/bin/python3 -c 'import resource, subprocess, sys
subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print("%.6f" % (r.ru_utime + r.ru_stime))' "$@"
}

# ---- the baseline ----
tools/baseline --port "$PORT" --workers "$WORKERS" &
base_pid=$!
pids="$pids $base_pid"
poll 100 curl -sf "http://127.0.0.1:$PORT/"
base_ticks0=$(ticks "$base_pid")
(wrk_run "http://127.0.0.1:$PORT/gcm/send" "$work/baseline.wrk")
base_ticks=$(($(ticks "$base_pid") - base_ticks0))
(steady_run "http://127.0.0.1:$PORT/gcm/send" "$work/baseline-steady.wrk")
# shellcheck disable=SC2086 # pids is a list
kill -TERM $pids 2>/dev/null; wait 2>/dev/null || true
pids=

# ---- fcmd ----
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost -addext subjectAltName=DNS:localhost \
    -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
mock_key=
if [ "$UPSTREAM" = v1 ]; then
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/sa-key.pem" 2>/dev/null
    openssl pkey -in "$work/sa-key.pem" -pubout -out "$work/sa-pub.pem"
    mock_key="--oauth-public-key $work/sa-pub.pem"
fi
# shellcheck disable=SC2086 # mock_key is two words or none
tools/mock-upstream --port 0 --latency-ms "$LATENCY_MS" --tls-cert "$work/cert.pem" --tls-key "$work/key.pem" \
    $mock_key >"$work/mock.out" &
pids="$pids $!"
poll 100 grep -q listening "$work/mock.out"
mock_port=$(sed -n 's/.*:\([0-9]*\) (https).*/\1/p' "$work/mock.out")
mock="https://localhost:$mock_port"
stats() { curl -s --cacert "$work/cert.pem" "$mock/stats?summary"; }

if [ "$UPSTREAM" = v1 ]; then
    pem=$(awk '{printf "%s\\n", $0}' "$work/sa-key.pem")
    printf '{"type":"service_account","project_id":"bench","private_key_id":"k","private_key":"%s",' "$pem" \
        >"$work/sa.json"
    printf '"client_email":"bench@bench.iam.gserviceaccount.com","token_uri":"%s/token"}\n' "$mock" >>"$work/sa.json"
    set -- --service-account "$work/sa.json" --fcm-url "$mock"
else
    # The mock's key, as an operator would give one: not on the command line.
    printf 'bench\n' >"$work/apikey"
    set -- --apikey-file "$work/apikey" --gcm-url "$mock/fcm/send"
fi
if [ "$SPOOL" != off ]; then
    set -- "$@" --spool "$work/spool" --spool-fsync "$SPOOL"
fi
redis_pid=
if [ "$REDIS" = on ]; then
    mkdir "$work/redis"
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$work/redis" --save "" --appendonly yes \
        --appendfsync everysec >"$work/redis.out" 2>&1 &
    redis_pid=$!
    pids="$pids $redis_pid"
    poll 100 redis-cli -p "$REDIS_PORT" ping
    set -- "$@" --redis "redis://127.0.0.1:$REDIS_PORT"
fi
# UPSTREAM_CONNECTIONS=default: fcmd's own (16 a worker, the limit found as it goes).
[ "$UPSTREAM_CONNECTIONS" = default ] || set -- "$@" --upstream-connections "$UPSTREAM_CONNECTIONS"
# shellcheck disable=SC2086 # FCMD_ARGS is a list
[ -z "${FCMD_ARGS:-}" ] || set -- "$@" $FCMD_ARGS
env ${FCMD_PRELOAD:+LD_PRELOAD="$FCMD_PRELOAD"} ./fcmd --port "$PORT" --host 127.0.0.1 --workers "$WORKERS" --logto "$work/fcmd.log" \
    --upstream-idle-timeout "$IDLE_TIMEOUT" --ca-file "$work/cert.pem" "$@" &
fcmd_pid=$!
pids="$pids $fcmd_pid"
poll 200 curl -sf "http://127.0.0.1:$PORT/readyz"

rss_cold=$(kb "$fcmd_pid" VmRSS)
# Warm up: a few sends load the TLS and HTTP/2 code and open connections, then
# the idle workers close them. "RSS idle" is read after this, so that it and
# "RSS after the drain" have the same code paged in.
warm=20
i=0
while [ $i -lt $warm ]; do
    curl -sf -o /dev/null --data "tokens=warm$i&payload={}" "http://127.0.0.1:$PORT/gcm/send"
    i=$((i + 1))
done
closed() { curl -s "http://127.0.0.1:$PORT/metrics" | grep -q '^fcmd_upstream_connections 0$'; }
warmed() { [ "$(stats | field delivered)" -ge $warm ] && closed; }
poll $((IDLE_TIMEOUT * 20 + 200)) warmed
rss_idle=$(kb "$fcmd_pid" VmRSS)
# The mock counts every connection, this script's own stats requests too.
mock_conns0=$(stats | field connections)
ticks_start=$(ticks "$fcmd_pid")
redis_ticks_start=$([ -z "$redis_pid" ] || ticks "$redis_pid")
start=$(ms)
if [ -n "$MESSAGES" ]; then
    # wrk always runs for its whole duration: stop it once fcmd has them all.
    (wrk_run "http://127.0.0.1:$PORT/gcm/send" "$work/fcmd.wrk" "$MESSAGES") &
    wrk_pid=$!
    accepted_all() { [ "$(curl -s "http://127.0.0.1:$PORT/gcm/report?scope=local" | field accepted)" -ge $((MESSAGES * TOKENS + warm)) ]; }
    poll $((DURATION * 20)) accepted_all
    kill -INT $wrk_pid
    wait $wrk_pid || true
else
    (wrk_run "http://127.0.0.1:$PORT/gcm/send" "$work/fcmd.wrk")
fi
wrk_end=$(ms)
report=$(curl -s "http://127.0.0.1:$PORT/gcm/report?scope=local")
pending=$(echo "$report" | field pending)
rss_loaded=$(kb "$fcmd_pid" VmRSS)
mock_conns1=$(stats | field connections)
upstream_conns=$(curl -s "http://127.0.0.1:$PORT/metrics" | awk '$1 == "fcmd_upstream_connections" {print $2}')
# The same light load as the bare server's, while the backlog is delivered at full rate.
(steady_run "http://127.0.0.1:$PORT/gcm/send" "$work/steady.wrk")
# Accepted counts what wrk and the steady load sent: the delivery waited for below.
report=$(curl -s "http://127.0.0.1:$PORT/gcm/report?scope=local")
steady_pending=$(echo "$report" | field pending)
accepted=$(($(echo "$report" | field accepted) - warm))
delivered_all() { [ "$(stats | field delivered)" -ge $((accepted + warm)) ]; }
poll 12000 delivered_all
done_at=$(ms)
poll 600 sh -c "curl -s 'http://127.0.0.1:$PORT/gcm/report?scope=local' | grep -q '\"pending\":0,'"
ticks_end=$(ticks "$fcmd_pid")
redis_ticks_end=$([ -z "$redis_pid" ] || ticks "$redis_pid")
# Idle workers give memory back after a second, and close their upstream
# connections after IDLE_TIMEOUT: wait (at most 3 s more) for RSS to settle near idle.
i=0
while [ $i -lt $((IDLE_TIMEOUT * 20 + 60)) ] && [ "$(kb "$fcmd_pid" VmRSS)" -gt $((rss_idle * 11 / 10)) ]; do
    sleep 0.05
    i=$((i + 1))
done
rss_after=$(kb "$fcmd_pid" VmRSS)
rss_peak=$(kb "$fcmd_pid" VmHWM)
hz=$(getconf CLK_TCK)
summary=$(stats)

# ---- the floor of delivery: h2load sends fcmd's upstream request ----
# The same request (the legacy body of one token; v1's is about as large),
# to the same mock, over as many connections as fcmd had open, 100 streams
# each: what an HTTP/2 client spends per request, with nothing of fcmd's.
floor_conns=$((upstream_conns > 0 ? upstream_conns : WORKERS))
floor_n=$((accepted > 10000 ? accepted : 10000))
printf '{"registration_ids":["token1"],"data":{"title": "hello"}}' >"$work/floor.json"
h2load_cpu=$(cpu_of sh -c 'exec h2load "$@" >"$0" 2>&1' "$work/h2load.out" -n "$floor_n" -c "$floor_conns" -m 100 \
    -t 1 -d "$work/floor.json" -H 'content-type: application/json' -H 'authorization: key=bench' "$mock/fcm/send")
h2load_ok=$(sed -n 's/^requests: .* \([0-9]*\) succeeded.*/\1/p' "$work/h2load.out")

# ---- the bare server's tail with the machine as loaded as fcmd's was ----
# While fcmd delivers, the mock (and its clients' TLS) share these cores with
# it: the bare server gets the same steady load while h2load drives the mock at
# the rate fcmd delivered, over as many connections, so the two p99s differ only
# by what fcmd itself does.
delivered_rate=$((accepted * 1000 / ((done_at - start) > 0 ? (done_at - start) : 1)))
tools/baseline --port "$((PORT + 2))" --workers "$WORKERS" &
loaded_pid=$!
pids="$pids $loaded_pid"
poll 100 curl -sf "http://127.0.0.1:$((PORT + 2))/"
h2load -D "$((STEADY + 1))" -c "$floor_conns" -m 100 -t 1 --rps "$((delivered_rate / floor_conns + 1))" \
    -d "$work/floor.json" -H 'content-type: application/json' -H 'authorization: key=bench' "$mock/fcm/send" \
    >"$work/h2load-loaded.out" 2>&1 &
loaded_h2load=$!
pids="$pids $loaded_h2load"
(steady_run "http://127.0.0.1:$((PORT + 2))/gcm/send" "$work/loaded-steady.wrk")
wait $loaded_h2load || true
kill -TERM $loaded_pid 2>/dev/null || true
wait $loaded_pid 2>/dev/null || true
pids=$(echo "$pids" | sed "s/ $loaded_pid\b//; s/ $loaded_h2load\b//")

base_rps=$(rps "$work/baseline.wrk")
fcmd_rps=$(rps "$work/fcmd.wrk")
lat=$(sed -n 's/^latency_us //p' "$work/fcmd.wrk")
base_lat=$(sed -n 's/^latency_us //p' "$work/baseline.wrk")
errors=$(awk '/^requests/ {print $4}' "$work/fcmd.wrk")
elapsed=$((done_at - start))
printf '\n== fcmd %s | %s workers, %s cores | upstream %s (mock, HTTP/2+TLS, %s ms) | spool %s | redis %s\n' \
    "$(./fcmd --version | cut -d' ' -f2)" "$WORKERS" "$(nproc)" "$UPSTREAM" "$LATENCY_MS" "$SPOOL" "$REDIS"
printf '== wrk -t%s -c%s -d%ss, %s token(s) a request\n' "$WRK_THREADS" "$CONNECTIONS" "$DURATION" "$TOKENS"
# One row of the table; every figure must be a number, or the run fails.
missing=
row() { # LABEL FORMAT FIGURE...
    label=$1 format=$2
    shift 2
    for v in "$@"; do
        case $v in '' | *[!0-9.]*) missing="$missing; $label" ;; esac
    done
    # shellcheck disable=SC2059 # the format is the caller's
    printf "%-44s $format\n" "$label" "$@"
}
percentile() { echo "$1" | awk -v k="$2" '{for (i = 1; i < NF; i++) if ($i == k) print $(i + 1)}'; }
row "baseline ingress (bare h2o, requests/s)" "%s" "$base_rps"
row "baseline latency p50 / p99 / p99.9 (us)" "%s / %s / %s" \
    "$(percentile "$base_lat" p50)" "$(percentile "$base_lat" p99)" "$(percentile "$base_lat" p99.9)"
row "fcmd ingress (requests/s)" "%s (%s%% of the baseline)" "$fcmd_rps" \
    "$((fcmd_rps * 100 / (base_rps > 0 ? base_rps : 1)))"
row "latency p50 / p99 / p99.9 (us)" "%s / %s / %s" "$(percentile "$lat" p50)" "$(percentile "$lat" p99)" \
    "$(percentile "$lat" p99.9)"
row "answers not 200, and socket errors (wrk)" "%s" "$errors"
steady_lat=$(sed -n 's/^latency_us //p' "$work/steady.wrk")
base_steady_lat=$(sed -n 's/^latency_us //p' "$work/baseline-steady.wrk")
row "steady 800/s: bare server p50 / p99 (us)" "%s / %s" "$(percentile "$base_steady_lat" p50)" \
    "$(percentile "$base_steady_lat" p99)"
loaded_steady_lat=$(sed -n 's/^latency_us //p' "$work/loaded-steady.wrk")
row "steady 800/s: bare server, mock at fcmd's rate" "%s / %s (h2load at %s requests/s)" \
    "$(percentile "$loaded_steady_lat" p50)" "$(percentile "$loaded_steady_lat" p99)" "$delivered_rate"
row "steady 800/s while delivering: p50 / p99 (us)" "%s / %s (%s pending when it began, %s when it ended)" \
    "$(percentile "$steady_lat" p50)" "$(percentile "$steady_lat" p99)" "$pending" "$steady_pending"
row "accepted targets" "%s" "$accepted"
row "all at the upstream after" "%s ms (%s ms after wrk stopped)" "$elapsed" "$((done_at - wrk_end))"
row "end-to-end delivered targets/s" "%s" "$((accepted * 1000 / (elapsed > 0 ? elapsed : 1)))"
row "at the upstream (mock)" "%s requests, %s targets delivered" "$(echo "$summary" | field requests)" \
    "$(echo "$summary" | field delivered)"
row "upstream connections open (all workers)" "%s" "$upstream_conns"
row "upstream connections fcmd opened during wrk" "%s" "$((mock_conns1 - mock_conns0 - 1))"
row "RSS at start (master + workers)" "%s KiB" "$rss_cold"
row "RSS idle, after a warm-up" "%s KiB" "$rss_idle"
row "RSS when wrk stopped" "%s KiB with %s targets pending" "$rss_loaded" "$pending"
if [ "${pending:-0}" -gt 0 ]; then
    row "RSS growth per pending target" "%s bytes" "$(((rss_loaded - rss_idle) * 1024 / pending))"
fi
row "RSS after the drain" "%s KiB = %s%% of idle (peak %s KiB)" "$rss_after" "$((rss_after * 100 / rss_idle))" \
    "$rss_peak"
fcmd_us=$(awk -v t=$((ticks_end - ticks_start)) -v hz="$hz" -v n="$accepted" 'BEGIN {printf "%.1f", t / hz / n * 1e6}')
base_us=$(awk -v t="$base_ticks" -v hz="$hz" -v n="$(awk '/^requests/ {print $2}' "$work/baseline.wrk")" \
    'BEGIN {printf "%.1f", t / hz / n * 1e6}')
h2load_us=$(awk -v s="$h2load_cpu" -v n="${h2load_ok:-0}" 'BEGIN {if (n > 0) printf "%.1f", s / n * 1e6}')
row "CPU seconds per 1,000 targets (fcmd)" "%s" \
    "$(awk -v t=$((ticks_end - ticks_start)) -v hz="$hz" -v n="$accepted" 'BEGIN {printf "%.3f", t / hz / (n / 1000)}')"
row "CPU us per message: fcmd, end to end" "%s" "$fcmd_us"
row "CPU us per request: bare h2o server (floor)" "%s" "$base_us"
row "CPU us per request: h2load upstream (floor)" "%s (%s requests, %s connections x 100 streams)" "$h2load_us" \
    "${h2load_ok:-0}" "$floor_conns"
row "fcmd CPU / floor" "%s" "$(awk -v f="$fcmd_us" -v a="$base_us" -v b="$h2load_us" 'BEGIN {printf "%.2f", f / (a + b)}')"
row "send p99 while delivering / bare p99, steady" "%s (%s against the bare server with the mock as busy)" \
    "$(awk -v f="$(percentile "$steady_lat" p99)" -v b="$(percentile "$base_steady_lat" p99)" \
    'BEGIN {printf "%.2f", f / (b > 0 ? b : 1)}')" \
    "$(awk -v f="$(percentile "$steady_lat" p99)" -v b="$(percentile "$loaded_steady_lat" p99)" \
    'BEGIN {printf "%.2f", f / (b > 0 ? b : 1)}')"
if [ -n "$redis_pid" ]; then
    fleet=$(curl -s "http://127.0.0.1:$PORT/gcm/report")
    row "fleet totals: accepted (with warm-up), instances" "%s, %s" "$(echo "$fleet" | field accepted)" \
        "$(echo "$fleet" | field instances)"
    row "Redis CPU, from wrk to drained" "%s s over %s s = %s%% of one core" \
        "$(awk -v t=$((redis_ticks_end - redis_ticks_start)) -v hz="$hz" 'BEGIN {printf "%.2f", t / hz}')" \
        "$(awk -v e="$elapsed" 'BEGIN {printf "%.1f", e / 1000}')" \
        "$(awk -v t=$((redis_ticks_end - redis_ticks_start)) -v hz="$hz" -v e="$elapsed" \
            'BEGIN {printf "%.1f", t / hz * 100000 / (e > 0 ? e : 1)}')"
fi
[ -z "$missing" ] || { echo "bench: no figure for${missing#;}" >&2; exit 1; }
