#!/bin/sh
# tools/webpush-ratio.sh - what a Web Push message costs against an FCM v1
# message, on the same mock in one run, and Web Push's delivery rate.
#
# One fcmd with an FCM v1 service account and a VAPID key sends MESSAGES
# (20,000) v1 messages to the mock upstream (HTTP/2 over TLS, LATENCY_MS per
# request), then as many Web Push messages to the mock's /webpush/ endpoints
# (each its own subscription URL on the same host, named literally by
# --webpush-allow). For each: fcmd's CPU (user + system, master and workers)
# per delivered message, and the messages delivered a second from the first
# request to the last delivery. Printed: both, and their CPU ratio (the
# target: at most 2.0, the encryption costing at most as much again as the
# rest). Environment: MESSAGES, LATENCY_MS (200), WORKERS (2), BATCH (1000
# targets a request), PORT (5660).
set -eu
cd "$(dirname "$0")/.."

MESSAGES=${MESSAGES:-20000}
LATENCY_MS=${LATENCY_MS:-200}
WORKERS=${WORKERS:-2}
BATCH=${BATCH:-1000}
PORT=${PORT:-5660}
. tools/bench-lib.sh

tree() { echo "$1 $(cat /proc/"$1"/task/"$1"/children 2>/dev/null)"; }
ticks() { s=0; for p in $(tree "$1"); do v=$(awk '{print $14 + $15}' /proc/"$p"/stat 2>/dev/null); s=$((s + ${v:-0})); done; echo $s; }
field() { sed -n "s/.*\"$1\":\([0-9-]*\).*/\1/p" | head -1; }
ms() { date +%s%3N; }

openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost -addext subjectAltName=DNS:localhost \
    -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/sa-key.pem" 2>/dev/null
openssl pkey -in "$work/sa-key.pem" -pubout -out "$work/sa-pub.pem"
openssl ecparam -name prime256v1 -genkey -noout -out "$work/vapid.pem"
tools/mock-upstream --port 0 --latency-ms "$LATENCY_MS" --tls-cert "$work/cert.pem" --tls-key "$work/key.pem" \
    --oauth-public-key "$work/sa-pub.pem" >"$work/mock.out" &
pids="$pids $!"
poll 100 grep -q listening "$work/mock.out"
mock_port=$(sed -n 's/.*:\([0-9]*\) (https).*/\1/p' "$work/mock.out")
mock="https://localhost:$mock_port"
pem=$(awk '{printf "%s\\n", $0}' "$work/sa-key.pem")
printf '{"type":"service_account","project_id":"bench","private_key_id":"k","private_key":"%s",' "$pem" >"$work/sa.json"
printf '"client_email":"bench@bench.iam.gserviceaccount.com","token_uri":"%s/token"}\n' "$mock" >>"$work/sa.json"

./fcmd --port "$PORT" --host 127.0.0.1 --workers "$WORKERS" --logto "$work/fcmd.log" --ca-file "$work/cert.pem" \
    --service-account "$work/sa.json" --fcm-url "$mock" --vapid-key "$work/vapid.pem" \
    --vapid-subject mailto:bench@example.com --webpush-allow localhost &
fcmd_pid=$!
pids="$pids $fcmd_pid"
poll 200 curl -sf "http://127.0.0.1:$PORT/healthz"

# The request bodies: BATCH tokens, or BATCH subscriptions (one P-256 key for
# all: what a message costs does not depend on which key it is for).
/usr/bin/python3 - "$work" "$BATCH" "$mock" <<'EOF'
import base64, json, sys
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
work, n, mock = sys.argv[1], int(sys.argv[2]), sys.argv[3]
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
point = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
payload = {"title": "hello", "body": "a message of a typical size, with a little text in it"}
with open(f"{work}/v1.json", "w") as f:
    json.dump({"tokens": [f"token{i}" for i in range(n)], "payload": payload}, f)
with open(f"{work}/wp.json", "w") as f:
    json.dump({"subscriptions": [{"endpoint": f"{mock}/webpush/s{i}", "keys": {"p256dh": b64(point),
              "auth": b64(bytes(16))}} for i in range(n)], "payload": payload}, f)
EOF

report() { curl -s "http://127.0.0.1:$PORT/gcm/report"; }
successes() { report | sed -n "s/.*\"$1\":{\([^}]*\)}.*/\1/p" | field successes; }
run() { # BODY PATH UPSTREAM: prints "CPU-us-a-message delivered-a-second delivered"
    done0=$(successes "$3")
    t0=$(ticks "$fcmd_pid")
    start=$(ms)
    sent=0
    while [ $sent -lt "$MESSAGES" ]; do
        code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
            --data-binary "@$work/$1" "http://127.0.0.1:$PORT$2")
        [ "$code" = 200 ] && sent=$((sent + BATCH))
    done
    until [ "$(report | field pending)" = 0 ]; do sleep 0.05; done
    end=$(ms)
    t1=$(ticks "$fcmd_pid")
    n=$(($(successes "$3") - done0))
    hz=$(getconf CLK_TCK)
    echo "$(((t1 - t0) * 1000000 / hz / n)) $((n * 1000 / (end - start))) $n"
}
v1=$(run v1.json /gcm/send fcm)
wp=$(run wp.json /webpush/send webpush)
# shellcheck disable=SC2086 # two lists of three numbers
set -- $v1 $wp
echo "messages $MESSAGES, latency ${LATENCY_MS} ms, workers $WORKERS, $BATCH targets a request"
echo "FCM v1:   $1 us CPU a message, $2 delivered/s ($3 delivered)"
echo "Web Push: $4 us CPU a message, $5 delivered/s ($6 delivered)"
awk -v a="$4" -v b="$1" 'BEGIN { printf "CPU ratio Web Push / v1: %.2f\n", a / b }'
