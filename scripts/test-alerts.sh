#!/usr/bin/env bash
# make test-alerts: the alerts checked for real, with Prometheus's own tools.
#
#   1. render   the PrometheusRule of deploy/k8s/overlays/production as a
#               plain rules file (go run ./deploy/k8s/cmd/rules)
#   2. check    promtool check rules --lint=all --lint-fatal on it
#   3. test     promtool test rules deploy/k8s/alerts/tests.yml: every alert
#               fires from input series, and none fires when healthy
#   4. e2e      nats-server, bin/webhook-receiver and bin/worker on loopback
#               ports the kernel picks, with a throwaway WORKSPACES_FILE and
#               JetStream store, and a real prometheus that loads the same
#               rules and scrapes both admin ports every second (labelled as
#               a ServiceMonitor labels them: job, namespace, pod). Through
#               its HTTP API it waits, bounded, until both jobs are up == 1,
#               both export cardwire_nats_connected == 1, an unsigned webhook
#               it sent shows in cardwire_receiver_requests_total
#               {outcome="invalid_signature"}, every rule has been evaluated
#               with health ok, and no alert is pending or firing (the
#               readiness alerts read kube-state-metrics, which is absent
#               here, so they stay silent).
#   5. stop     the receiver and the worker (SIGTERM: each must exit 0), then
#               NATS and Prometheus
#
# It prints how long each step took. Needs promtool and prometheus on PATH
# (Debian/Ubuntu: apt-get install prometheus; tried with 2.42), curl, and
# bin/ from make build (make test-alerts builds it first). Nothing listens
# beyond 127.0.0.1 and nothing is left behind: the scratch directory goes
# unless a step fails (then its logs are printed and it is kept).
#
# Variables: TEST_ALERTS_TIMEOUT (60) bounds the e2e wait, in seconds;
# KEEP=1 keeps the scratch directory.
set -euo pipefail
cd "$(dirname "$0")/.."

# --- tools -----------------------------------------------------------------
missing=()
for tool in promtool prometheus curl; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  pkgs=prometheus
  case " ${missing[*]} " in *" curl "*) pkgs="$pkgs curl" ;; esac
  if [ "${CI:-}" = true ]; then
    echo "test-alerts: ${missing[*]} missing on PATH under CI=true: the CI machine must install them (apt-get install -y $pkgs)" >&2
  else
    echo "test-alerts: ${missing[*]} not found. Install them, then run make test-alerts again:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y $pkgs    # Debian/Ubuntu (Prometheus 2.42 on Debian 12)" >&2
    echo "  or put promtool and prometheus from https://prometheus.io/download/ on PATH" >&2
  fi
  exit 1
fi
for b in nats-server webhook-receiver worker cardwire-dev; do
  [ -x "bin/$b" ] || {
    echo "test-alerts: bin/$b is missing: run make build first (make test-alerts does)" >&2
    exit 1
  }
done

timeout_s=${TEST_ALERTS_TIMEOUT:-60}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/cardwire-alerts.XXXXXX")
pids=() # every process started here, in start order
declare -A pid_name=()
ok=0
timings=()

cleanup() {
  local rc=$? i
  trap - EXIT INT TERM
  # Anything still running (a failed step): ours only, by pid, newest
  # first and one at a time, so that NATS stops after its clients.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[i]}" 2>/dev/null || true
    wait "${pids[i]}" 2>/dev/null || true
  done
  if [ "$ok" != 1 ]; then
    for log in "$tmp"/*.log; do
      [ -s "$log" ] || continue
      echo "--- last lines of $log" >&2
      tail -n 25 "$log" >&2
    done
    echo "test-alerts: FAILED; scratch directory kept: $tmp" >&2
  elif [ "${KEEP:-}" = 1 ]; then
    echo "test-alerts: scratch directory kept: $tmp"
  else
    rm -rf "$tmp"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

now() { echo "${EPOCHREALTIME/[.,]/}"; } # microseconds
t_all=$(now)
t_step=$t_all
# done_step NAME: records how long the step since the last one took.
done_step() {
  local t d
  t=$(now)
  d=$(((t - t_step) / 1000))
  timings+=("$(printf '%-10s %6d.%03d s' "$1" $((d / 1000)) $((d % 1000)))")
  printf 'test-alerts: %s done in %d.%03d s\n' "$1" $((d / 1000)) $((d % 1000))
  t_step=$t
}
fail() {
  echo "test-alerts: $*" >&2
  exit 1
}

echo "test-alerts: $(prometheus --version 2>&1 | head -n 1)"
echo "test-alerts: $(promtool --version 2>&1 | head -n 1)"

# --- 1-3: the rules, with promtool ----------------------------------------
go run ./deploy/k8s/cmd/rules -k deploy/k8s/overlays/production -o "$tmp/rules.yml"
cp deploy/k8s/alerts/tests.yml "$tmp/tests.yml"
n_alerts=$(grep -c '^  - alert: ' "$tmp/rules.yml" || true)
n_rules=$(grep -Ec '^  - (alert|record): ' "$tmp/rules.yml" || true)
[ "$n_alerts" -gt 0 ] || fail "no alert in the rendered rules ($tmp/rules.yml)"
echo "test-alerts: rendered $n_rules rules ($n_alerts alerts) from deploy/k8s/overlays/production"
done_step render

promtool check rules --lint=all --lint-fatal "$tmp/rules.yml"
done_step check

(cd "$tmp" && promtool test rules tests.yml)
done_step test

# --- 4: e2e ----------------------------------------------------------------
# start NAME LOG COMMAND…: a process of ours, output to $tmp/LOG.
start() {
  local name=$1 log=$tmp/$2
  shift 2
  "$@" >"$log" 2>&1 &
  pids+=($!)
  pid_name[$!]=$name
}
alive() { kill -0 "$1" 2>/dev/null; }
deadline=$(($(date +%s) + timeout_s))
before_deadline() { [ "$(date +%s)" -lt "$deadline" ]; }

# NATS with JetStream on a port of the kernel's choosing; its ports file
# says which.
start NATS nats.log bin/nats-server -js -sd "$tmp/nats" -a 127.0.0.1 -p -1 -n cardwire-alerts --ports_file_dir "$tmp"
nats_pid=${pids[-1]}
nats_url=""
while [ -z "$nats_url" ]; do
  alive "$nats_pid" || fail "nats-server exited (see nats.log)"
  before_deadline || fail "nats-server wrote no ports file in ${timeout_s}s"
  [ -f "$tmp/nats-server_$nats_pid.ports" ] &&
    nats_url=$(sed -n 's/.*"nats":\["\(nats:\/\/[^"]*\)".*/\1/p' "$tmp/nats-server_$nats_pid.ports")
  [ -n "$nats_url" ] || sleep 0.1
done

# The development workspaces file (fresh secrets), as make run uses.
env -u CARDWIRE_DEV_STACK bin/cardwire-dev workspaces -o "$tmp/workspaces.json" -force >/dev/null

# Both binaries with a clean environment: only what is set here. Seam is a
# loopback port nobody listens on and the catch-up is off, so nothing
# leaves the machine (no encoding is started, so Seam is never called).
base_env=(env -i "PATH=$PATH" "HOME=$tmp" LOG_FORMAT=json "NATS_URL=$nats_url" "WORKSPACES_FILE=$tmp/workspaces.json")
start receiver receiver.log "${base_env[@]}" ADMIN_ADDR=127.0.0.1:0 RECEIVER_ADDR=127.0.0.1:0 bin/webhook-receiver
receiver_pid=${pids[-1]}
start worker worker.log "${base_env[@]}" ADMIN_ADDR=127.0.0.1:0 WORKER_API_ADDR=127.0.0.1:0 \
  SEAM_API_URL=http://127.0.0.1:1 CATCHUP_ENABLED=false bin/worker
worker_pid=${pids[-1]}

# listening LOG COMPONENT: the address the component's "listening" line
# names (the binaries log the port the kernel picked for :0).
listening() {
  grep '"message":"listening"' "$tmp/$1" 2>/dev/null | grep "\"component\":\"$2\"" |
    sed -n 's/.*"addr":"\([^"]*\)".*/\1/p' | head -n 1
}
receiver_admin="" worker_admin="" receiver_addr=""
until [ -n "$receiver_admin" ] && [ -n "$worker_admin" ] && [ -n "$receiver_addr" ]; do
  alive "$receiver_pid" || fail "the receiver exited (see receiver.log)"
  alive "$worker_pid" || fail "the worker exited (see worker.log)"
  before_deadline || fail "the receiver and the worker did not log their addresses in ${timeout_s}s"
  sleep 0.1
  receiver_admin=$(listening receiver.log admin)
  receiver_addr=$(listening receiver.log receiver)
  worker_admin=$(listening worker.log admin)
done
for admin in "$receiver_admin" "$worker_admin"; do
  until curl -fsS -o /dev/null "http://$admin/readyz" 2>/dev/null; do
    before_deadline || fail "http://$admin/readyz did not answer 200 in ${timeout_s}s"
    sleep 0.1
  done
done
echo "test-alerts: NATS $nats_url, receiver admin $receiver_admin, worker admin $worker_admin: ready"
done_step stack

# Prometheus, as the ServiceMonitors would have it scrape: job is the
# Service's name, with namespace and pod labels, and the same rules.
cat >"$tmp/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - rules.yml
scrape_configs:
  - job_name: webhook-receiver
    static_configs:
      - targets: ['$receiver_admin']
        labels: {namespace: cardwire-alerts, pod: webhook-receiver-0}
  - job_name: worker
    static_configs:
      - targets: ['$worker_admin']
        labels: {namespace: cardwire-alerts, pod: worker-0}
EOF
promtool check config "$tmp/prometheus.yml" >/dev/null
# A free port: Prometheus cannot report one the kernel picked, so try a few
# random ones (a port taken meanwhile makes it exit: try the next).
prom=""
for _ in 1 2 3 4 5; do
  port=$((20000 + RANDOM % 40000))
  (: </dev/tcp/127.0.0.1/"$port") 2>/dev/null && continue
  start Prometheus prometheus.log prometheus --config.file="$tmp/prometheus.yml" \
    --storage.tsdb.path="$tmp/prometheus" --web.listen-address="127.0.0.1:$port"
  prom_pid=${pids[-1]}
  until curl -fsS -o /dev/null "http://127.0.0.1:$port/-/ready" 2>/dev/null; do
    alive "$prom_pid" || break
    before_deadline || fail "Prometheus was not ready in ${timeout_s}s"
    sleep 0.1
  done
  if alive "$prom_pid"; then
    prom=http://127.0.0.1:$port
    break
  fi
  grep -q 'address already in use' "$tmp/prometheus.log" || fail "Prometheus exited (see prometheus.log)"
  mv "$tmp/prometheus.log" "$tmp/prometheus.port-$port-taken.log.txt"
done
[ -n "$prom" ] || fail "no free port for Prometheus after 5 tries"
echo "test-alerts: Prometheus on $prom"
done_step prometheus

# One unsigned webhook: the receiver answers 401 and counts it.
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
  --data '{"event_type":"acs_credential.issued"}' "http://$receiver_addr/webhooks/seam")
[ "$code" = 401 ] || fail "an unsigned webhook got $code from the receiver, want 401"

# value EXPR: the first sample's value of an instant query, empty if none.
# A query Prometheus refuses ends the test.
value() {
  local out
  out=$(curl -sS --get --data-urlencode "query=$1" "$prom/api/v1/query") || return 0
  case $out in *'"status":"error"'*) fail "Prometheus refuses the query $1: $out" ;; esac
  sed -n 's/.*"value":\[[^,]*,"\([^"]*\)"\].*/\1/p' <<<"$out"
}
# wait_for EXPR WANT WHAT: until the instant query EXPR gives WANT.
wait_for() {
  local got=""
  until [ "$got" = "$2" ]; do
    alive "$prom_pid" || fail "Prometheus exited (see prometheus.log)"
    before_deadline || fail "$3: $1 = '${got:-no result}' after ${timeout_s}s, want $2"
    sleep 0.25
    got=$(value "$1")
  done
  echo "test-alerts: $3: $1 = $got"
}
wait_for 'count(up{job=~"webhook-receiver|worker",namespace="cardwire-alerts"} == 1)' 2 "both targets up"
wait_for 'count(cardwire_nats_connected{job=~"webhook-receiver|worker"} == 1)' 2 "both connected to NATS"
wait_for 'sum(cardwire_receiver_requests_total{job="webhook-receiver",outcome="invalid_signature"})' 1 "the unsigned webhook counted"
# Every rule evaluated by Prometheus itself, without an error.
while :; do
  rules_json=$(curl -fsS "$prom/api/v1/rules?type=alert" || true)
  healthy=$(grep -o '"health":"ok"' <<<"$rules_json" | wc -l)
  broken=$(grep -o '"lastError":"[^"]\+"' <<<"$rules_json" || true)
  [ -z "$broken" ] || fail "Prometheus reports rule errors: $broken"
  [ "$healthy" -lt "$n_alerts" ] || break
  before_deadline || fail "only $healthy of $n_alerts alerting rules evaluated with health ok after ${timeout_s}s"
  sleep 0.25
done
echo "test-alerts: Prometheus evaluates all $n_alerts alerting rules (health ok)"
# And a healthy stack has no alert pending or firing (CardwireTargetsAbsent
# is pending until the first scrape; it must go).
while :; do
  alerts_json=$(curl -fsS "$prom/api/v1/alerts" || true)
  case $alerts_json in *'"alerts":[]'*) break ;; esac
  before_deadline || fail "alerts active on a healthy stack after ${timeout_s}s: $alerts_json"
  sleep 0.25
done
echo "test-alerts: no alert pending or firing"
done_step e2e

# --- 5: stop, clients first ------------------------------------------------
for pid in "$receiver_pid" "$worker_pid"; do kill -TERM "$pid"; done
for pid in "$receiver_pid" "$worker_pid"; do
  rc=0
  wait "$pid" || rc=$?
  [ "$rc" = 0 ] || fail "${pid_name[$pid]} exited $rc on SIGTERM, want 0 (see its log)"
done
for pid in "$nats_pid" "$prom_pid"; do
  kill -TERM "$pid"
  rc=0
  wait "$pid" || rc=$?
  [ "$rc" = 0 ] || fail "${pid_name[$pid]} exited $rc on SIGTERM, want 0 (see its log)"
done
pids=()
done_step stop

ok=1
t_step=$t_all
done_step total >/dev/null
echo "test-alerts: PASS ($(prometheus --version 2>&1 | head -n 1 | sed 's/ (.*//'))"
printf '  %s\n' "${timings[@]}"
