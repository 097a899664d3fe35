#!/usr/bin/env bash
# make test-run: a newcomer's two steps on the real stack, and its stop.
# Starts make run in a session of its own (so that it has a process group
# of its own, as under a terminal or a service manager), waits until the
# worker is ready, runs make demo (an encoding settles, and one fails, in
# each workspace), then stops the stack the way `timeout` and service
# managers do: SIGTERM to the whole process group at once. Every process
# of the stack, NATS included, must be gone within STOP_WITHIN seconds and
# the lock (.data/stack.env) released. Needs ./bin (make build).
#
# Variables:
#   PORT_BASE    where the stack listens (default 27000: clear of a make
#                run on the default ports; the checkout's .data is shared,
#                so a make run already up here is refused)
#   READY_WITHIN seconds for the stack to get ready (default 60)
#   STOP_WITHIN  seconds for it to stop (default 20)
set -euo pipefail
cd "$(dirname "$0")/.."

export PORT_BASE="${PORT_BASE:-27000}"
ready_within="${READY_WITHIN:-60}"
stop_within="${STOP_WITHIN:-20}"
log=$(mktemp)
nats_port=$((PORT_BASE + 22))
admin_port=$((PORT_BASE + 191))

setsid make --no-print-directory run >"$log" 2>&1 &
make_pid=$!
fail() {
  echo "make test-run: $*" >&2
  echo "--- make run's output:" >&2
  cat "$log" >&2
  # Leave nothing behind: the group, and a NATS that outlived it.
  kill -KILL -- "-$make_pid" 2>/dev/null || true
  pkill -KILL -f "nats-server .* -p $nats_port " 2>/dev/null || true
  exit 1
}

start=$SECONDS
until curl -fsS -o /dev/null "http://127.0.0.1:$admin_port/readyz" 2>/dev/null; do
  kill -0 "$make_pid" 2>/dev/null || fail "make run exited before the worker was ready"
  [ $((SECONDS - start)) -lt "$ready_within" ] || fail "the worker was not ready within ${ready_within}s"
  sleep 0.5
done
echo "make test-run: the stack is ready after $((SECONDS - start)) s"

make --no-print-directory demo || fail "make demo failed"

# The stack's processes: its group, and NATS (a group of its own, so that
# Ctrl-C reaches it only through the orderly stop).
nats_pid=$(pgrep -f "nats-server .* -p $nats_port " | head -n 1) || fail "no NATS process on port $nats_port"
start=$SECONDS
kill -TERM -- "-$make_pid"
while pgrep -g "$make_pid" >/dev/null || kill -0 "$nats_pid" 2>/dev/null; do
  if [ $((SECONDS - start)) -ge "$stop_within" ]; then
    pids=$(pgrep -d, -g "$make_pid" || true)
    ! kill -0 "$nats_pid" 2>/dev/null || pids+="${pids:+,}$nats_pid"
    left=$(ps -o pid=,args= -p "$pids" 2>/dev/null || true)
    fail "still running ${stop_within}s after SIGTERM to the stack's process group:
$left"
  fi
  sleep 0.2
done
# make itself ends by the signal (it passes SIGTERM on, then re-raises
# it); the stack's own script says whether it stopped in order.
wait "$make_pid" || true
grep -q '^run.sh: stopped' "$log" || fail "make run did not stop in order after SIGTERM"
[ ! -e .data/stack.env ] || fail "the lock .data/stack.env is still there after the stop"
echo "make test-run: SIGTERM to the stack's process group stopped every part, NATS included, in $((SECONDS - start)) s"
rm -f "$log"
