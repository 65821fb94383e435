#!/bin/sh
# tools/demo.sh - what `make run` does: start fcmd on the bundled mock
# upstream (no Google credentials needed), send one sample push the way a
# GoCM client would, show what happened, and keep serving until Ctrl-C.
#
# UPSTREAM=v1 (the default) uses FCM HTTP v1 with a throw-away service
# account whose key the mock's token endpoint trusts; UPSTREAM=legacy uses
# the legacy API with an API key, as GoCM did.
#
# Ctrl-C in a terminal signals the whole foreground process group.  fcmd
# and the mock therefore run in sessions of their own (setsid), and this
# script alone turns Ctrl-C into one SIGTERM each and waits for them: a
# second stop signal would make fcmd stop at once and kill its workers.
# FCMD_BIN and MOCK_BIN name other builds (the sanitizer build, say).
set -eu
cd "$(dirname "$0")/.."

PORT=${PORT:-5601}
LATENCY_MS=${LATENCY_MS:-200}
UPSTREAM=${UPSTREAM:-v1}
FCMD_BIN=${FCMD_BIN:-./fcmd}
MOCK_BIN=${MOCK_BIN:-tools/mock-upstream}
work=$(mktemp -d)
mock_pid=
fcmd_pid=

cleanup() {
    [ -n "$fcmd_pid" ] && kill -TERM "$fcmd_pid" 2>/dev/null && wait "$fcmd_pid" 2>/dev/null || true
    [ -n "$mock_pid" ] && kill -TERM "$mock_pid" 2>/dev/null && wait "$mock_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

# Polls a command until it succeeds, for at most ~10 seconds.
poll() {
    i=0
    until "$@" >/dev/null 2>&1; do
        i=$((i + 1))
        [ $i -lt 200 ] || { echo "demo: timed out waiting for: $*" >&2; exit 1; }
        sleep 0.05
    done
}

if [ "$UPSTREAM" = v1 ]; then
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/key.pem" 2>/dev/null
    openssl pkey -in "$work/key.pem" -pubout -out "$work/pub.pem"
    mock_key="--oauth-public-key $work/pub.pem"
else
    mock_key=
fi
# shellcheck disable=SC2086 # mock_key is two words or none
setsid "$MOCK_BIN" --port 0 --latency-ms "$LATENCY_MS" $mock_key >"$work/mock.out" &
mock_pid=$!
poll grep -q listening "$work/mock.out"
mock_port=$(sed -n 's/.*:\([0-9]*\) (http).*/\1/p' "$work/mock.out")
mock="http://127.0.0.1:$mock_port"

if [ "$UPSTREAM" = v1 ]; then
    # A service-account file like the one Firebase gives you, pointing at the mock.
    pem=$(awk '{printf "%s\\n", $0}' "$work/key.pem")
    printf '{"type":"service_account","project_id":"demo-project","private_key_id":"demo-key",' >"$work/sa.json"
    printf '"private_key":"%s","client_email":"fcmd-demo@demo-project.iam.gserviceaccount.com",' "$pem" >>"$work/sa.json"
    printf '"token_uri":"%s/token"}\n' "$mock" >>"$work/sa.json"
    echo "mock upstream (FCM HTTP v1 + OAuth2 token endpoint, ${LATENCY_MS} ms latency) on $mock"
    setsid "$FCMD_BIN" --service-account "$work/sa.json" --fcm-url "$mock" --port "$PORT" &
else
    echo "mock upstream (legacy FCM API, ${LATENCY_MS} ms latency) on $mock"
    # The key from the environment, not the command line, where any local user could read it.
    FCMD_APIKEY=demo-server-key setsid "$FCMD_BIN" --port "$PORT" --gcm-url "$mock/fcm/send" &
fi
fcmd_pid=$!
poll curl -sf "http://127.0.0.1:$PORT/healthz"

echo
echo "\$ curl -d 'tokens=demo-token-1&tokens=demo-token-2&payload={\"title\": \"hello\"}' http://127.0.0.1:$PORT/gcm/send"
curl -s -d 'tokens=demo-token-1&tokens=demo-token-2&payload={"title": "hello"}' "http://127.0.0.1:$PORT/gcm/send"
poll sh -c "curl -s http://127.0.0.1:$PORT/gcm/report | grep -q '\"pending\":0,'"
echo
echo "\$ curl http://127.0.0.1:$PORT/gcm/report"
curl -s "http://127.0.0.1:$PORT/gcm/report"
echo
echo "what the mock upstream received:"
curl -s "http://127.0.0.1:$mock_port/stats"
echo
echo "fcmd is serving on port $PORT (mock upstream on $mock_port). Try:"
echo "  curl -d 'tokens=notreg-1&tokens=canon-2&payload={\"x\":1}' http://127.0.0.1:$PORT/gcm/send"
echo "  curl http://127.0.0.1:$PORT/gcm/report/notregistered"
echo "Press Ctrl-C to stop."
wait "$fcmd_pid"
