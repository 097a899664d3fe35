#!/usr/bin/env bash
# Starts the local stack: a NATS server with JetStream (from the
# nats-server/v2 module, data under ./.data/nats), the webhook receiver, the
# Seam simulator and the worker, serving two development workspaces (two
# properties) from one WORKSPACES_FILE. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .data

# Written once, then kept: its secrets stay the same across runs.
ws_file=.data/workspaces.json
[ -s "$ws_file" ] || bin/cardwire-dev workspaces -o "$ws_file" -force

pids=()
stop() {
  trap - EXIT INT TERM
  [ ${#pids[@]} -gt 0 ] && kill -TERM "${pids[@]}" 2>/dev/null || true
  wait || true
}
trap stop EXIT INT TERM

bin/nats-server -js -sd .data/nats -a 127.0.0.1 -p "${NATS_PORT:-4222}" -n cardwire-dev &
pids+=($!)

# Every part reads the workspaces file: each workspace's webhook secret
# (receiver, simulator), its Seam credentials (worker, simulator). The
# single-workspace variables cannot be combined with it, so any in the
# caller's environment are dropped.
unset SEAM_WEBHOOK_SECRET SEAM_WEBHOOK_SECRET_FILE SEAM_API_KEY SEAM_API_KEY_FILE SEAM_WORKSPACE_ID \
  SEAM_SIM_API_KEY WORKER_API_TOKEN WORKER_API_TOKEN_FILE
export WORKSPACES_FILE="$ws_file"
export NATS_URL="nats://127.0.0.1:${NATS_PORT:-4222}"
export LOG_FORMAT="${LOG_FORMAT:-console}"
# The receiver runs under a small supervisor, so that make demo-outage can
# take it down and bring it back: while $receiver_down exists the receiver
# is stopped (SIGTERM, as a pod is), and it is started again once the file
# is gone. A receiver that exits on its own ends make run, as any part does.
receiver_down=.data/receiver.down
rm -f "$receiver_down"
supervise_receiver() {
  local pid=""
  trap '[ -z "$pid" ] || { kill -TERM "$pid" 2>/dev/null; wait "$pid"; }; exit 0' TERM
  while :; do
    if [ -e "$receiver_down" ]; then
      if [ -n "$pid" ]; then
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" || true
        pid=""
        echo "run.sh: receiver stopped ($receiver_down exists)" >&2
      fi
    elif [ -z "$pid" ]; then
      bin/webhook-receiver &
      pid=$!
    elif ! kill -0 "$pid" 2>/dev/null; then
      wait "$pid" # exited on its own: its status ends the supervisor
      exit
    fi
    sleep 0.2
  done
}
supervise_receiver &
pids+=($!)

# The Seam simulator: Seam's API on :8090 for every workspace of the file,
# each workspace's webhooks signed with its own secret, to the receiver.
SEAM_SIM_ADDR=127.0.0.1:8090 SEAM_SIM_WEBHOOK_URL=http://127.0.0.1:8080/webhooks/seam bin/seam-sim &
pids+=($!)

# The worker waits for SEAM_EVENTS (the receiver creates it). Its API listens
# on loopback only, so it needs no token here (the file has no api_tokens).
# A short first deadline keeps the demo's failure quick, and a short
# catch-up interval lets make demo-outage show the catch-up within seconds.
WORKER_API_ADDR=127.0.0.1:8081 SEAM_API_URL=http://127.0.0.1:8090 ENCODING_CONFIRM_TIMEOUT=10s \
  CATCHUP_INTERVAL="${CATCHUP_INTERVAL:-10s}" bin/worker &
pids+=($!)

cat <<MSG

  cardwire is starting.
    workspaces (WORKSPACES_FILE=$ws_file; their secrets are in it):
$(bin/cardwire-dev workspaces -list | sed 's/^/      /')
    webhook endpoint:  POST http://127.0.0.1:8080/webhooks/seam
    worker API:        http://127.0.0.1:8081/v1/encodings
    Seam simulator:    http://127.0.0.1:8090 (every workspace, with the credentials above)
    metrics / health:  http://127.0.0.1:9090 (receiver), :9091 (worker): /metrics /healthz /readyz

  In another terminal:
    make demo                  in each workspace, start a succeeding and a failing encoding; print outcomes and latency
    make demo-outage           stop the receiver, encode a card, start it again: the catch-up (every ${CATCHUP_INTERVAL:-10s}) settles it
    make tail                  watch events arrive in SEAM_EVENTS
    make outcomes              watch encoding outcomes on ENCODING_EVENTS
    make register CRED=card-1  register a pending encoding for credential card-1 (in Hotel Aurora)
    make send CRED=card-1      send a signed acs_credential.issued for it: it settles
                               (WORKSPACE='Hotel Borealis' on either picks the other property)

MSG
wait -n
