#!/bin/sh
# tools/page-ratio.sh - fcmd's intake with the status page open in a browser
# against its intake without, in one run.
#
# Each round starts a fresh fcmd on a stalled upstream (as
# tools/stalled-ratio.sh does: intake alone) three times and drives
# /gcm/send with wrk: with nothing else, with a headless chromium showing
# http://HOST/ (which reads /gcm/report and /readyz every two seconds), and
# with curl making the page's requests on the same beat (what the page
# costs fcmd, without what the browser costs the machine: it runs on the
# same cores).  The order turns each round.  It prints each round's
# requests/s, the ratios to none, how many reports the page read during wrk
# (so it really polled), and the median ratios.
# Environment: FCMD (./fcmd), ROUNDS (3), DURATION (5 s), CONNECTIONS (64),
# WORKERS (2), PORT (5760), CHROMIUM (chromium).
set -eu
cd "$(dirname "$0")/.."

FCMD=${FCMD:-./fcmd}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CONNECTIONS=${CONNECTIONS:-64}
WORKERS=${WORKERS:-2}
PORT=${PORT:-5760}
CHROMIUM=${CHROMIUM:-chromium}
. tools/bench-lib.sh

openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost -addext subjectAltName=DNS:localhost \
    -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
tools/mock-upstream --port 0 --latency-ms 3600000 --tls-cert "$work/cert.pem" --tls-key "$work/key.pem" \
    >"$work/mock.out" &
pids="$pids $!"
poll 100 grep -q listening "$work/mock.out"
mock_port=$(sed -n 's/.*:\([0-9]*\) (https).*/\1/p' "$work/mock.out")
printf 'bench\n' >"$work/apikey"
base="http://127.0.0.1:$PORT"

reports() { # the report's 200s so far
    curl -s "$base/metrics" | awk '/^fcmd_http_requests_total\{endpoint="report",status="200"\}/ {print $2}'
}

# The page has read the report 4 times: past its start, in its steady polling.
page_polls() { [ "$(reports)" -ge 4 ]; }

run() { # MODE (none or page) -> requests/s in $work/rate.MODE, reports read during wrk in $work/read.MODE
    "$FCMD" --port "$PORT" --host 127.0.0.1 --workers "$WORKERS" --logto "$work/fcmd.log" \
        --queue-size 2000000 --shutdown-timeout 1 --ca-file "$work/cert.pem" --apikey-file "$work/apikey" \
        --gcm-url "https://localhost:$mock_port/fcm/send" &
    fcmd_pid=$!
    pids="$pids $fcmd_pid" # stopped by the trap should a step fail
    poll 200 curl -sf "$base/readyz"
    browser=
    if [ "$1" = curl ]; then
        (while :; do
            curl -s "$base/gcm/report" >/dev/null
            curl -s "$base/readyz" >/dev/null
            sleep 2
        done) &
        browser=$!
        pids="$pids $browser"
        poll 200 page_polls
    elif [ "$1" = page ]; then
        rm -rf "$work/chromium"
        "$CHROMIUM" --headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage \
            --user-data-dir="$work/chromium" "$base/" >"$work/chromium.log" 2>&1 &
        browser=$!
        pids="$pids $browser"
        poll 200 page_polls
    fi
    before=$(reports)
    wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" -s tools/wrk-send.lua "$base/gcm/send" >"$work/wrk" 2>&1
    echo $(($(reports) - before)) >"$work/read.$1"
    rps "$work/wrk" >"$work/rate.$1"
    [ -z "$browser" ] || { kill -TERM "$browser"; wait "$browser" 2>/dev/null || true; }
    kill -TERM "$fcmd_pid"
    wait "$fcmd_pid" 2>/dev/null || true
}

printf 'status page open or not | stalled upstream | %s workers | wrk -t2 -c%s -d%ss | %s\n' "$WORKERS" \
    "$CONNECTIONS" "$DURATION" "$FCMD"
round=1
while [ "$round" -le "$ROUNDS" ]; do
    case $((round % 3)) in
    1) run none && run page && run curl ;;
    2) run page && run curl && run none ;;
    0) run curl && run none && run page ;;
    esac
    none=$(cat "$work/rate.none")
    [ -n "$none" ] && [ "$none" -gt 0 ] || { echo "page-ratio: no figure without the page" >&2; exit 1; }
    line="round $round: none $none requests/s"
    for m in page curl; do
        r=$(cat "$work/rate.$m")
        [ -n "$r" ] && [ "$(cat "$work/read.$m")" -gt 0 ] || { echo "page-ratio: $m read no report" >&2; exit 1; }
        pct=$(awk -v a="$r" -v b="$none" 'BEGIN {printf "%.1f", 100 * a / b}')
        echo "$pct" >>"$work/ratios.$m"
        line="$line | $m $r ($pct%, $(cat "$work/read.$m") reports read)"
    done
    echo "$line"
    round=$((round + 1))
done
median() { sort -n "$1" | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
echo "median over $ROUNDS round(s), to none: chromium on the page $(median "$work/ratios.page")%," \
    "its requests alone $(median "$work/ratios.curl")%"
