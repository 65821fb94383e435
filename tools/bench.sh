#!/bin/sh
# tools/bench.sh - ingress and end-to-end delivery on this machine.
#
# Starts the mock upstream (HTTP/2 over TLS, LATENCY_MS per request) and
# fcmd, drives /gcm/send with wrk for DURATION seconds over CONNECTIONS
# connections (one token per request, the GoCM form body), then waits until
# the mock has received every accepted message and prints the figures.
# Environment: DURATION (10), CONNECTIONS (64), LATENCY_MS (200), WORKERS (2),
# UPSTREAM_CONNECTIONS (16), PORT (5650), UPSTREAM (legacy or v1; legacy),
# SPOOL (off, never, batch or always: the spool's fsync mode; off).
set -eu
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-64}
LATENCY_MS=${LATENCY_MS:-200}
WORKERS=${WORKERS:-2}
UPSTREAM_CONNECTIONS=${UPSTREAM_CONNECTIONS:-16}
PORT=${PORT:-5650}
UPSTREAM=${UPSTREAM:-legacy}
SPOOL=${SPOOL:-off}
work=$(mktemp -d)
mock_pid=
fcmd_pid=

cleanup() {
    [ -z "$fcmd_pid" ] || kill -TERM "$fcmd_pid" 2>/dev/null || true
    [ -z "$mock_pid" ] || kill -TERM "$mock_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

poll() { # command, tries of 50 ms
    n=$1
    shift
    i=0
    until "$@" >/dev/null 2>&1; do
        i=$((i + 1))
        [ $i -lt "$n" ] || { echo "bench: timed out waiting for: $*" >&2; exit 1; }
        sleep 0.05
    done
}
ms() { date +%s%3N; }
json_field() { sed -n "s/.*\"$1\":\([0-9-]*\).*/\1/p"; }

openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
mock_key=
if [ "$UPSTREAM" = v1 ]; then
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/sa-key.pem" 2>/dev/null
    openssl pkey -in "$work/sa-key.pem" -pubout -out "$work/sa-pub.pem"
    mock_key="--oauth-public-key $work/sa-pub.pem"
fi
# shellcheck disable=SC2086 # mock_key is two words or none
tools/mock-upstream --port 0 --latency-ms "$LATENCY_MS" --tls-cert "$work/cert.pem" --tls-key "$work/key.pem" \
    $mock_key >"$work/mock.out" &
mock_pid=$!
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
    set -- --apikey bench --gcm-url "$mock/fcm/send"
fi
if [ "$SPOOL" != off ]; then
    set -- "$@" --spool "$work/spool" --spool-fsync "$SPOOL"
fi
./fcmd --port "$PORT" --host 127.0.0.1 --workers "$WORKERS" --logto "$work/fcmd.log" \
    --upstream-connections "$UPSTREAM_CONNECTIONS" --ca-file "$work/cert.pem" "$@" &
fcmd_pid=$!
poll 200 curl -sf "http://127.0.0.1:$PORT/healthz"

echo "== fcmd $(./fcmd --version | cut -d' ' -f2), $WORKERS workers, $(nproc) cores, $UPSTREAM upstream;" \
    "mock HTTP/2+TLS at ${LATENCY_MS} ms, $UPSTREAM_CONNECTIONS connections per worker, spool $SPOOL"
echo "== wrk -t2 -c$CONNECTIONS -d${DURATION}s --latency -s tools/wrk-send.lua"
start=$(ms)
wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s tools/wrk-send.lua "http://127.0.0.1:$PORT/gcm/send" \
    | tee "$work/wrk.out"
wrk_end=$(ms)
accepted=$(curl -s "http://127.0.0.1:$PORT/gcm/report" | json_field accepted)
delivered_all() { [ "$(stats | json_field delivered)" -ge "$accepted" ]; }
poll 12000 delivered_all
done_at=$(ms)
report=$(curl -s "http://127.0.0.1:$PORT/gcm/report")
echo "== accepted $accepted messages; all delivered $((done_at - start)) ms after the first request"
echo "   ($((done_at - wrk_end)) ms after wrk stopped; end to end $((accepted * 1000 / (done_at - start))) messages/s)"
echo "== mock: $(stats)"
echo "== report: $report"
