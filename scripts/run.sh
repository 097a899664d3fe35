#!/usr/bin/env bash
# Starts the local stack (make run): a NATS server with JetStream (from the
# nats-server/v2 module, data under ./.data/nats), the webhook receiver, the
# worker and the Seam simulator, serving two development workspaces (two
# properties) from one WORKSPACES_FILE; with SEAM=sandbox, a Seam sandbox
# instead of the simulator. Everything listens on 127.0.0.1 only. Ctrl-C
# stops the receiver, the worker and the simulator, then NATS, and ends
# with status 0.
#
#   scripts/run.sh              start the stack (make run builds ./bin first)
#   scripts/run.sh check WHAT   fail, for WHAT, when the stack is up (make run
#                               before it builds, make clean)
#
# Variables (in the environment, or make run VAR=…):
#   PORT_BASE            moves every port: NATS on PORT_BASE+22, the receiver
#                        on +80, the worker API on +81, the simulator on +90,
#                        the receiver's and the worker's admin on +190, +191
#   NATS_PORT (4222), RECEIVER_PORT (8080), WORKER_API_PORT (8081),
#   SIM_PORT (8090), RECEIVER_ADMIN_PORT (9190), WORKER_ADMIN_PORT (9191)
#                        move one each (bin/cardwire-dev ports -h)
#   SEAM                 sim (default) or sandbox: no simulator; the worker
#                        calls https://connect.getseam.com
#   SANDBOX_WORKSPACES_FILE  with SEAM=sandbox, the sandbox's workspaces file
#                        (default .data/sandbox.json)
#   ENCODING_CONFIRM_TIMEOUT, CATCHUP_INTERVAL  10s each with the simulator
#   LOG_FORMAT (console) and the binaries' other tuning variables pass through.
# The addresses, NATS_URL and the single-workspace credentials
# (SEAM_WEBHOOK_SECRET, SEAM_API_KEY, WORKER_API_TOKEN, …) of the caller's
# environment are not used: each part gets its own, and the secrets are in
# the workspaces file. make send, register, demo, demo-outage, tail and
# outcomes follow the same rule, and find the ports in .data/stack.env.
set -euo pipefail
cd "$(dirname "$0")/.."

# While the stack runs, .data/stack.env says how to reach it (the cardwire-dev
# commands of the make targets read it); it is also the lock that keeps a
# second make run, and make clean, out.
stack_file=.data/stack.env

# stack_pid prints the pid of the run.sh whose stack is up; fails when none is.
stack_pid() {
  local pid
  [ -f "$stack_file" ] || return 1
  pid=$(sed -n 's/^STACK_PID=\([0-9][0-9]*\)$/\1/p' "$stack_file" 2>/dev/null | head -n 1)
  [ -n "$pid" ] && [ "$pid" != "$$" ] && kill -0 "$pid" 2>/dev/null || return 1
  case "$(ps -o args= -p "$pid" 2>/dev/null)" in
  *run.sh*) echo "$pid" ;;
  *) return 1 ;; # a pid reused since the stack was killed
  esac
}

# refuse_if_up exits 1, naming $1, when the stack is up.
refuse_if_up() {
  local pid nats api
  pid=$(stack_pid) || return 0
  nats=$(sed -n 's/^NATS_PORT=//p' "$stack_file")
  api=$(sed -n 's/^WORKER_API_PORT=//p' "$stack_file")
  {
    echo "$1: the local stack is already up (scripts/run.sh, pid $pid${nats:+; NATS on 127.0.0.1:$nats, the worker API on :$api})."
    case $1 in
    *clean*) echo "  Stop it first (Ctrl-C in its terminal, or kill -INT $pid): .data holds its NATS store." ;;
    *) echo "  One stack per checkout: use that one, or stop it first (Ctrl-C in its terminal, or kill -INT $pid)." ;;
    esac
  } >&2
  exit 1
}

case "${1:-}" in
check)
  refuse_if_up "${2:-scripts/run.sh}"
  exit 0
  ;;
"") ;;
*)
  echo "usage: scripts/run.sh [check WHAT]" >&2
  exit 2
  ;;
esac

# Ctrl-C in a terminal signals its whole foreground process group: make,
# this script and every part at once, so that NATS would stop together with
# its clients and make would report the interrupt as an error. So the stack
# runs as a job of its own (job control, set -m): it takes the terminal,
# Ctrl-C reaches only it, it stops the parts in order and ends with 0, and
# make sees 0. Only when this script is in the terminal's foreground:
# `make run &` must not take the terminal from the shell.
if [ -z "${CARDWIRE_RUN_JOB:-}" ] && [ -t 2 ] &&
  [ "$(ps -o tpgid= -p $$ | tr -d ' ')" = "$(ps -o pgid= -p $$ | tr -d ' ')" ]; then
  set +e -m
  CARDWIRE_RUN_JOB=1 "$PWD/scripts/run.sh"
  rc=$?
  # Ctrl-Z stops the job, but make and the shell above it keep waiting:
  # carry on rather than leave a stopped stack behind.
  while [ -n "$(jobs -p)" ]; do
    fg %% >/dev/null
    rc=$?
  done
  exit "$rc"
fi

unset CARDWIRE_RUN_JOB
mkdir -p .data
refuse_if_up "make run"
# Take the lock: create the file only if it does not exist (a stack killed
# without its cleanup leaves one whose pid is gone: replace it).
lock() { (set -C && echo "STACK_PID=$$" >"$stack_file") 2>/dev/null; }
if ! lock; then
  refuse_if_up "make run"
  rm -f "$stack_file"
  lock || {
    refuse_if_up "make run"
    echo "make run: cannot create $stack_file" >&2
    exit 1
  }
fi
nats_pid=""
clients=()
declare -A names=()
release() {
  # Only our own lock: never a file another run.sh took since.
  [ "$(sed -n 's/^STACK_PID=//p' "$stack_file" 2>/dev/null | head -n 1)" != "$$" ] || rm -f "$stack_file"
}
# stop stops the clients first, then NATS (so that the worker drains and
# the receiver finishes its publishes against a live server), and exits $1.
stop() {
  trap - EXIT
  # A second signal does not cut the orderly stop short: a SIGTERM to the
  # whole process group reaches this script twice (make passes its own on),
  # and the default action at the second would leave NATS running.
  trap '' INT TERM HUP
  if [ ${#clients[@]} -gt 0 ]; then
    kill -TERM "${clients[@]}" 2>/dev/null || true
    wait "${clients[@]}" 2>/dev/null || true
  fi
  if [ -n "$nats_pid" ]; then
    kill -TERM "$nats_pid" 2>/dev/null || true
    wait "$nats_pid" 2>/dev/null || true
  fi
  release
  [ "$1" != 0 ] || echo "run.sh: stopped" >&2
  exit "$1"
}
trap 'stop $?' EXIT
trap 'stop 0' INT TERM HUP

# The ports: free on 127.0.0.1, or nothing starts (never a half-started
# stack talking to somebody else's NATS).
port_lines=$(env -u CARDWIRE_DEV_STACK bin/cardwire-dev ports -check) || exit 1
eval "$port_lines"

# The caller's addresses, NATS_URL and single-workspace credentials are not
# the stack's: each part gets its own below, the secrets are in the file.
ignored=()
for v in SEAM_WEBHOOK_SECRET SEAM_WEBHOOK_SECRET_FILE SEAM_API_KEY SEAM_API_KEY_FILE SEAM_WORKSPACE_ID \
  SEAM_SIM_API_KEY WORKER_API_TOKEN WORKER_API_TOKEN_FILE WORKER_API_INSECURE NATS_URL NATS_CREDS_FILE \
  ADMIN_ADDR RECEIVER_ADDR WORKER_API_ADDR SEAM_API_URL SEAM_SIM_ADDR SEAM_SIM_WEBHOOK_URL WORKSPACES_FILE; do
  if [ -n "${!v:-}" ]; then ignored+=("$v"); fi
  unset "$v"
done
unset CARDWIRE_DEV_STACK

seam=${SEAM:-sim}
case $seam in
sim)
  # Written once, then kept: its secrets stay the same across runs.
  ws_file=.data/workspaces.json
  [ -s "$ws_file" ] || bin/cardwire-dev workspaces -o "$ws_file" -force
  ;;
sandbox)
  ws_file=${SANDBOX_WORKSPACES_FILE:-.data/sandbox.json}
  if [ ! -s "$ws_file" ]; then
    echo "make run SEAM=sandbox: $ws_file is missing: it names your sandbox workspace, its API key and the secret of the webhook you registered (README, \"Against a Seam sandbox\")" >&2
    exit 1
  fi
  ;;
*)
  echo "make run: SEAM must be sim (the Seam simulator, the default) or sandbox (a Seam sandbox), got '$seam'" >&2
  exit 1
  ;;
esac
ws_list=$(WORKSPACES_FILE=$ws_file bin/cardwire-dev workspaces -list) || exit 1

{
  echo "# make run's stack (scripts/run.sh), while it runs; removed when it stops. make send, register,"
  echo "# demo, demo-outage, tail and outcomes talk to the stack it describes; it also keeps a second"
  echo "# make run, and make clean, out."
  echo "STACK_PID=$$"
  echo "SEAM=$seam"
  echo "WORKSPACES_FILE=$ws_file"
  echo "$port_lines"
} >"$stack_file.tmp"
mv -f "$stack_file.tmp" "$stack_file"

export WORKSPACES_FILE="$ws_file"
export NATS_URL="nats://127.0.0.1:$NATS_PORT"
export LOG_FORMAT="${LOG_FORMAT:-console}"

# NATS runs in a process group of its own, so that Ctrl-C (the terminal's
# SIGINT to the stack's group) does not reach it: stop stops it last.
set -m
bin/nats-server -js -sd .data/nats -a 127.0.0.1 -p "$NATS_PORT" -n cardwire-dev &
nats_pid=$!
set +m
for _ in $(seq 100); do
  kill -0 "$nats_pid" 2>/dev/null || {
    echo "make run: NATS did not start (see above)" >&2
    exit 1
  }
  (: </dev/tcp/127.0.0.1/"$NATS_PORT") 2>/dev/null && break
  sleep 0.1
done

start() { # name command…: start a client of NATS
  "${@:2}" &
  clients+=($!)
  names[$!]=$1
}

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
      RECEIVER_ADDR="127.0.0.1:$RECEIVER_PORT" ADMIN_ADDR="127.0.0.1:$RECEIVER_ADMIN_PORT" bin/webhook-receiver &
      pid=$!
    elif ! kill -0 "$pid" 2>/dev/null; then
      wait "$pid" # exited on its own: its status ends the supervisor
      exit
    fi
    sleep 0.2
  done
}
start receiver supervise_receiver

if [ "$seam" = sim ]; then
  # The Seam simulator: Seam's API for every workspace of the file, each
  # workspace's webhooks signed with its own secret, to the receiver.
  start "Seam simulator" env SEAM_SIM_ADDR="127.0.0.1:$SIM_PORT" \
    SEAM_SIM_WEBHOOK_URL="http://127.0.0.1:$RECEIVER_PORT/webhooks/seam" bin/seam-sim
  # A short first deadline keeps the demo's failure quick, and a short
  # catch-up interval lets make demo-outage show the catch-up within seconds.
  seam_url="http://127.0.0.1:$SIM_PORT"
  export ENCODING_CONFIRM_TIMEOUT="${ENCODING_CONFIRM_TIMEOUT:-10s}" CATCHUP_INTERVAL="${CATCHUP_INTERVAL:-10s}"
else
  seam_url=https://connect.getseam.com
fi

# The worker waits for SEAM_EVENTS (the receiver creates it). Its API listens
# on loopback only, so it needs no token here (the file has no api_tokens).
start worker env WORKER_API_ADDR="127.0.0.1:$WORKER_API_PORT" ADMIN_ADDR="127.0.0.1:$WORKER_ADMIN_PORT" \
  SEAM_API_URL="$seam_url" bin/worker

note=""
if [ ${#ignored[@]} -gt 0 ]; then
  note="
    note: ignored from your environment: ${ignored[*]}
          (each part gets its own address; the stack's secrets are in $ws_file)"
fi
if [ "$seam" = sim ]; then
  seam_line="Seam simulator:    http://127.0.0.1:$SIM_PORT (every workspace, with the credentials above)"
  try="    make demo                  in each workspace, start a succeeding and a failing encoding; print outcomes and latency
    make demo-outage           stop the receiver, encode a card, start it again: the catch-up (every $CATCHUP_INTERVAL) settles it
    make tail                  watch events arrive in SEAM_EVENTS
    make outcomes              watch encoding outcomes on ENCODING_EVENTS
    make register CRED=card-1  register a pending encoding for credential card-1 (in Hotel Aurora; 2 min to confirm it)
    make send CRED=card-1      send a signed acs_credential.issued for it: it settles
                               (WORKSPACE='Hotel Borealis' on either picks the other property)"
else
  seam_line="Seam:              $seam_url (the sandbox's API key from $ws_file)"
  try="    make tail                  watch events arrive in SEAM_EVENTS (through your tunnel to :$RECEIVER_PORT)
    make outcomes              watch encoding outcomes on ENCODING_EVENTS
    curl -s -X POST http://127.0.0.1:$WORKER_API_PORT/v1/encodings -H 'Content-Type: application/json' \\
      -d '{\"acs_encoder_id\": \"<a sandbox encoder>\", \"acs_credential_id\": \"<a sandbox credential>\"}'
                               encode a card in the sandbox; its webhook settles it"
fi
cat <<MSG

  cardwire is starting (SEAM=$seam; every port on 127.0.0.1 only; Ctrl-C stops it).
    workspaces (WORKSPACES_FILE=$ws_file; their secrets are in it):
$(sed 's/^/      /' <<<"$ws_list")
    NATS:              nats://127.0.0.1:$NATS_PORT (JetStream, data in .data/nats)
    webhook endpoint:  POST http://127.0.0.1:$RECEIVER_PORT/webhooks/seam
    worker API:        http://127.0.0.1:$WORKER_API_PORT/v1/encodings
    $seam_line
    metrics / health:  http://127.0.0.1:$RECEIVER_ADMIN_PORT (receiver), http://127.0.0.1:$WORKER_ADMIN_PORT (worker): /metrics /healthz /readyz$note

  In another terminal (the make targets find this stack's ports in $stack_file):
$try

MSG

# Until a part exits on its own (a signal runs stop instead).
set +e
wait -n
rc=$?
set -e
died=()
for pid in "${clients[@]}"; do
  kill -0 "$pid" 2>/dev/null || died+=("${names[$pid]}")
done
kill -0 "$nats_pid" 2>/dev/null || died+=(NATS)
echo "run.sh: ${died[*]:-a part} exited (status $rc): stopping the stack" >&2
[ "$rc" != 0 ] || rc=1
stop "$rc"
