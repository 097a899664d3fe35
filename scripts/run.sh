#!/usr/bin/env bash
# Starts the local stack: a NATS server with JetStream (from the
# nats-server/v2 module, data under ./.data/nats), the webhook receiver, the
# Seam simulator and the worker, with a development webhook secret. Ctrl-C
# stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .data

secret_file=.data/dev-webhook-secret
[ -s "$secret_file" ] || bin/cardwire-dev secret > "$secret_file"

pids=()
stop() {
  trap - EXIT INT TERM
  [ ${#pids[@]} -gt 0 ] && kill -TERM "${pids[@]}" 2>/dev/null || true
  wait || true
}
trap stop EXIT INT TERM

bin/nats-server -js -sd .data/nats -a 127.0.0.1 -p "${NATS_PORT:-4222}" -n cardwire-dev &
pids+=($!)

# The receiver reads the dev secret from the file; a SEAM_WEBHOOK_SECRET in
# the caller's environment would conflict with it.
unset SEAM_WEBHOOK_SECRET
export NATS_URL="nats://127.0.0.1:${NATS_PORT:-4222}"
export LOG_FORMAT="${LOG_FORMAT:-console}"
SEAM_WEBHOOK_SECRET_FILE="$secret_file" bin/webhook-receiver &
pids+=($!)

# The Seam simulator: Seam's API on :8090, webhooks signed with the dev
# secret to the receiver.
SEAM_WEBHOOK_SECRET_FILE="$secret_file" SEAM_SIM_ADDR=127.0.0.1:8090 SEAM_SIM_API_KEY=seam_test_dev \
  SEAM_SIM_WEBHOOK_URL=http://127.0.0.1:8080/webhooks/seam bin/seam-sim &
pids+=($!)

# The worker waits for SEAM_EVENTS (the receiver creates it). Its API listens
# on loopback only, so it needs no token here. A short first deadline keeps
# the demo's failure quick.
SEAM_WORKSPACE_ID=00000000-0000-4000-8000-000000000001 WORKER_API_ADDR=127.0.0.1:8081 \
  SEAM_API_KEY=seam_test_dev SEAM_API_URL=http://127.0.0.1:8090 ENCODING_CONFIRM_TIMEOUT=10s \
  bin/worker &
pids+=($!)

cat <<MSG

  cardwire is starting.
    development webhook secret: $(cat "$secret_file")   (in $secret_file)
    webhook endpoint:           POST http://127.0.0.1:8080/webhooks/seam
    worker API:                 http://127.0.0.1:8081/v1/encodings
    Seam simulator:             http://127.0.0.1:8090 (API key seam_test_dev)
    metrics / health:           http://127.0.0.1:9090 (receiver), :9091 (worker): /metrics /healthz /readyz

  In another terminal:
    make demo                  start a succeeding and a failing encoding, print outcomes and latency
    make tail                  watch events arrive in SEAM_EVENTS
    make outcomes              watch encoding outcomes on ENCODING_EVENTS
    make register CRED=card-1  register a pending encoding for credential card-1
    make send CRED=card-1      send a signed acs_credential.issued for it: it settles

MSG
wait -n
