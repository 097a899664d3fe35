#!/usr/bin/env bash
# make test-image: builds both images offline (scripts/image.sh on the local
# base of scripts/base-image.sh), twice, and fails unless the digests agree;
# loads them into podman and runs each as Kubernetes runs it (read-only root
# filesystem and no tmpfs, uid 65532, no capabilities, no new privileges)
# with --network=host on loopback ports, against a real nats-server
# (bin/nats-server):
#   - -version of the binary and of /cardwire print VERSION and COMMIT;
#   - /healthz and /readyz answer 200 on the admin port;
#   - a svix-signed webhook (cardwire-dev send) through the receiver
#     container is stored in SEAM_EVENTS (read back with cardwire-dev tail);
#   - SIGTERM: the container exits 0 within SHUTDOWN_TIMEOUT.
#
# Needs podman and runc (crun fails on some hosts' cgroups: runc is used),
# ko, crane and curl; bin/ from make build. Under CI=true a missing tool is a
# failure; otherwise the message says how to install it.
#
# Variables: VERSION, COMMIT, IMAGE_PREFIX (as make image);
# TEST_IMAGE_PORT_BASE (27400): NATS on +22, its monitor on +23, the
# receiver on +80 (admin +90), the worker API on +81 (admin +91);
# SHUTDOWN_TIMEOUT (10s).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/image-lib.sh

version=${VERSION:-dev}
commit=${COMMIT:-unknown}
prefix=${IMAGE_PREFIX:-ghcr.io/cardwire}
shutdown=${SHUTDOWN_TIMEOUT:-10s}
pb=${TEST_IMAGE_PORT_BASE:-27400}
nats_port=$((pb + 22)) mon_port=$((pb + 23))
recv_port=$((pb + 80)) recv_admin=$((pb + 90))
api_port=$((pb + 81)) worker_admin=$((pb + 91))
out=.cache/images

need "make test-image" podman runc ko crane curl
for f in bin/nats-server bin/cardwire-dev; do
  [ -x "$f" ] || { echo "make test-image: no $f: run make build first (make test-image does)" >&2; exit 1; }
done
case $shutdown in *s) secs=${shutdown%s} ;; *) echo "SHUTDOWN_TIMEOUT must be whole seconds (10s), got $shutdown" >&2; exit 1 ;; esac

# --ulimit: podman asks for the host's limits otherwise, which a nested
# container may not raise.
podman=(podman --runtime runc)
run_opts=(--network=host --read-only --read-only-tmpfs=false --user 65532:65532 --cap-drop=all
  --security-opt=no-new-privileges --ulimit nofile=1024:1024 --ulimit nproc=4096:4096)

tmp=$(mktemp -d)
containers=()
nats_pid=
cleanup() {
  local c
  for c in "${containers[@]}"; do
    "${podman[@]}" rm -f -t 0 "$c" >/dev/null 2>&1 || true
  done
  if [ -n "$nats_pid" ]; then
    kill "$nats_pid" 2>/dev/null || true
    wait "$nats_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

fail() {
  local c
  echo "make test-image: FAIL: $*" >&2
  for c in "${containers[@]}"; do
    echo "--- podman logs $c" >&2
    "${podman[@]}" logs "$c" 2>&1 | tail -n 30 >&2 || true
  done
  exit 1
}
step() { printf '%-70s' "$*"; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
secs_since() { local d=$(($(now_ms) - $1)); printf '%d.%02ds' $((d / 1000)) $((d % 1000 / 10)); }
ok() { echo "ok${1:+ ($1)}"; }

for p in $nats_port $mon_port $recv_port $recv_admin $api_port $worker_admin; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    fail "127.0.0.1:$p is in use (TEST_IMAGE_PORT_BASE=$pb; set another)"
  fi
done

# Build twice: the second build must give the same digests.
step "build on the local base (scripts/image.sh IMAGE_BASE=local)"
t0=$(now_ms)
VERSION=$version COMMIT=$commit IMAGE_PREFIX=$prefix IMAGE_BASE=local IMAGE_OUT=$out \
  ./scripts/image.sh >"$tmp/build.log" 2>&1 || { cat "$tmp/build.log" >&2; fail "scripts/image.sh"; }
ok "$(secs_since "$t0")"
step "rebuild: the same digests"
VERSION=$version COMMIT=$commit IMAGE_PREFIX=$prefix IMAGE_BASE=local IMAGE_OUT=$out-again \
  ./scripts/image.sh >"$tmp/build2.log" 2>&1 || { cat "$tmp/build2.log" >&2; fail "scripts/image.sh (again)"; }
diff "$out/digests" "$out-again/digests" >&2 || fail "two builds of the same sources differ"
rm -rf "$out-again"
ok
for b in webhook-receiver worker; do
  [ -s "$out/sbom/$b-linux-$(go env GOARCH).spdx.json" ] || fail "no SBOM for $b in $out/sbom"
done

# Load the tarballs; the image podman holds must be the one in the layout
# (its id is the digest of the config, which names every layer's content).
declare -A image
for b in webhook-receiver worker; do
  manifest=$(sed -n "s/^$b sha256://p" "$out/digests")
  want=$(grep -o '"config":{[^}]*}' "$out/$b/blobs/sha256/$manifest" | grep -o 'sha256:[0-9a-f]\{64\}')
  step "podman load -i $out/$b.tar"
  image[$b]=$prefix/$b:$version
  old=$("${podman[@]}" image inspect --format '{{.Id}}' "${image[$b]}" 2>/dev/null || true)
  "${podman[@]}" load -q -i "$out/$b.tar" >"$tmp/load.log" 2>&1 || { cat "$tmp/load.log" >&2; fail "podman load $b"; }
  got=$("${podman[@]}" image inspect --format '{{.Id}}' "${image[$b]}")
  [ "sha256:$got" = "$want" ] || fail "podman holds ${image[$b]} as $got, the build's config is $want"
  # The image this tag named before (an earlier build), if nothing else uses it.
  [ -z "$old" ] || [ "$old" = "$got" ] || "${podman[@]}" rmi "$old" >/dev/null 2>&1 || true
  ok "sha256:${manifest:0:12}"
done

for b in webhook-receiver worker; do
  step "$b -version, /cardwire -version"
  v=$("${podman[@]}" run --rm "${run_opts[@]}" "${image[$b]}" -version 2>&1) || fail "$b -version: $v"
  [ "$v" = "$b $version (commit $commit)" ] || fail "$b -version printed \"$v\", want \"$b $version (commit $commit)\""
  v=$("${podman[@]}" run --rm "${run_opts[@]}" --entrypoint /cardwire "${image[$b]}" -version 2>&1) || fail "/cardwire -version: $v"
  [ "$v" = "cardwire $version (commit $commit)" ] || fail "/cardwire -version in $b printed \"$v\""
  ok
done

step "nats-server with JetStream on 127.0.0.1:$nats_port"
bin/nats-server -a 127.0.0.1 -p "$nats_port" -m "$mon_port" -js -sd "$tmp/nats" >"$tmp/nats.log" 2>&1 &
nats_pid=$!
for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$mon_port/healthz?js-enabled-only=true" >/dev/null 2>&1 && break
  kill -0 "$nats_pid" 2>/dev/null || { cat "$tmp/nats.log" >&2; fail "nats-server exited"; }
  sleep 0.1
done
ok

# wait_ready NAME PORT: /healthz and /readyz 200 within 30s.
wait_ready() {
  local path code
  for path in /healthz /readyz; do
    for _ in $(seq 300); do
      code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$2$path" || true)
      [ "$code" = 200 ] && break
      [ "$("${podman[@]}" inspect --format '{{.State.Running}}' "$1" 2>/dev/null)" = true ] || fail "$1 exited before $path answered 200"
      sleep 0.1
    done
    [ "$code" = 200 ] || fail "$1: $path answered $code, not 200, within 30s"
  done
}

# start NAME IMAGE ENV...: a detached container.
start() {
  local name=$1 img=$2 args=() e
  shift 2
  for e in "$@"; do args+=(-e "$e"); done
  "${podman[@]}" run -d --name "$name" "${run_opts[@]}" "${args[@]}" -e NATS_URL="nats://127.0.0.1:$nats_port" \
    -e SHUTDOWN_TIMEOUT="$shutdown" -e LOG_FORMAT=json "$img" >/dev/null || fail "podman run $name"
  containers+=("$name")
}

secret=$(bin/cardwire-dev secret)
recv=cardwire-test-receiver-$$
worker=cardwire-test-worker-$$
step "receiver: /healthz and /readyz 200 on :$recv_admin"
start "$recv" "${image[webhook-receiver]}" RECEIVER_ADDR="127.0.0.1:$recv_port" ADMIN_ADDR="127.0.0.1:$recv_admin" SEAM_WEBHOOK_SECRET="$secret"
wait_ready "$recv" "$recv_admin"
ok
step "worker: /healthz and /readyz 200 on :$worker_admin"
start "$worker" "${image[worker]}" WORKER_API_ADDR="127.0.0.1:$api_port" ADMIN_ADDR="127.0.0.1:$worker_admin"
wait_ready "$worker" "$worker_admin"
ok

step "a signed webhook through the receiver, stored in SEAM_EVENTS"
cred=cred-$$-$RANDOM
SEAM_WEBHOOK_SECRET=$secret bin/cardwire-dev send -url "http://127.0.0.1:$recv_port/webhooks/seam" -credential "$cred" >"$tmp/send.log" 2>&1 ||
  { cat "$tmp/send.log" >&2; fail "cardwire-dev send"; }
# Read it back: tail -all prints the whole stream, then waits for more.
NATS_URL=nats://127.0.0.1:$nats_port bin/cardwire-dev tail -all >"$tmp/tail.log" 2>&1 &
tail_pid=$!
for _ in $(seq 100); do
  grep -q "$cred" "$tmp/tail.log" && break
  sleep 0.1
done
kill "$tail_pid" 2>/dev/null || true
wait "$tail_pid" 2>/dev/null || true
grep -q "$cred" "$tmp/tail.log" || { cat "$tmp/send.log" "$tmp/tail.log" >&2; fail "the event of $cred is not in SEAM_EVENTS"; }
ok "$(sed -n '1s/^svix-id [^ ]* → \(.*[^ ]\) *$/\1/p' "$tmp/send.log")"

for c in "$recv" "$worker"; do
  step "SIGTERM ${c%-"$$"}: exit 0 within SHUTDOWN_TIMEOUT ($shutdown)"
  t0=$(now_ms)
  "${podman[@]}" kill --signal TERM "$c" >/dev/null
  code=$(timeout $((secs + 5)) "${podman[@]}" wait "$c") || fail "$c still running $((secs + 5))s after SIGTERM"
  took=$(($(now_ms) - t0))
  [ "$code" = 0 ] || fail "$c exited $code after SIGTERM"
  [ "$took" -lt $((secs * 1000)) ] || fail "$c took $(secs_since "$t0") to stop, SHUTDOWN_TIMEOUT is $shutdown"
  ok "$(secs_since "$t0")"
done
echo "make test-image: ok ($prefix/webhook-receiver:$version and …/worker:$version, commit $commit)"
