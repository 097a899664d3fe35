#!/usr/bin/env bash
# make test-k8s: applies deploy/k8s to a real Kubernetes API server and rolls
# it out on fake nodes. Everything runs on 127.0.0.1 from binaries built here:
#
#   etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl,
#   kwok and controller-gen
#       from the wrapper module tools/k8s (k8s.io/kubernetes v1.37.2, etcd
#       v3.7.0, kwok v0.8.0, controller-tools v0.23.0: one build, so kwok and
#       controller-gen share the Kubernetes libraries compiled for the
#       servers), built into .cache/k8s/bin and rebuilt only when
#       tools/k8s/go.mod, go.sum or its commands change (cold ≈ 11–13 min on
#       2 cores, 3.2 GB RAM; the module download is ≈ 30 s of that)
#   kwok makes three fake nodes whose pods turn Running and Ready;
#   controller-gen generates the ServiceMonitor and PrometheusRule CRDs from
#   the prometheus-operator API module cardwire's go.mod already requires
#
# Then: namespaces labelled pod-security.kubernetes.io/enforce=restricted and
# warn=restricted; deploy/k8s/namespace, overlays/dev, overlays/production,
# deploy/k8s/nats and overlays/existing-nats (into a namespace of its own, it
# is production's variant) applied with kubectl apply -k --server-side
# --validate=strict --warnings-as-errors, so any error or warning fails; every
# Deployment (at its autoscaler's minReplicas) and the NATS StatefulSet rolled
# out; one node drained while the PodDisruptionBudgets hold; a rollout restart
# of each Deployment. Each step prints how long it took.
#
# With the argument "build" it only builds (CI starts that early, in the
# background). Variables: K8S_PORT_BASE (16440; etcd +1/+2, API server +3, controller
# manager +4, scheduler +5, kwok +6), KEEP=1 leaves the cluster running
# afterwards (KUBECONFIG=.cache/k8s/run/kubeconfig; stop it, last first, with the pids in
# .cache/k8s/run/pids), CI=true makes a piece that cannot be had fail rather
# than explain.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

base=${K8S_PORT_BASE:-16440}
etcd_port=$((base + 1)) etcd_peer=$((base + 2)) api_port=$((base + 3))
kcm_port=$((base + 4)) sched_port=$((base + 5)) kwok_port=$((base + 6))

cache=$root/.cache/k8s
bin=$cache/bin
run=$cache/run
mkdir -p "$bin"
# Nothing under .cache/k8s belongs in git.
[ -f "$cache/.gitignore" ] || echo '*' >"$cache/.gitignore"

t0=$(date +%s)
step_start=$t0
step_name=
step() {
  local now
  now=$(date +%s)
  [ -z "$step_name" ] || printf 'test-k8s: %-58s %4ss\n' "$step_name" $((now - step_start))
  step_name=$1 step_start=$now
}
fail() {
  echo "test-k8s: FAIL: $*" >&2
  exit 1
}
# missing WHAT HOW: a piece cannot be had. Under CI it fails; elsewhere it
# says how to get it, and fails too (make test-k8s was asked for).
missing() {
  if [ "${CI:-}" = true ]; then
    fail "$1 is missing (CI=true): $2"
  fi
  echo "test-k8s: $1 is missing: $2" >&2
  exit 1
}

command -v go >/dev/null || missing go "install Go $(sed -n 's/^go //p' tools/k8s/go.mod) or newer"

# --- build ---------------------------------------------------------------
step "build (cached in .cache/k8s/bin)"
stamp=$(cat tools/k8s/go.mod tools/k8s/go.sum tools/k8s/cmd/*/*.go | sha256sum | cut -c1-16)
if [ "$(cat "$bin/.stamp" 2>/dev/null)" != "$stamp" ]; then
  echo "test-k8s: building etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kwok, controller-gen (tools/k8s changed or first build: ≈ 11–13 min on 2 cores)"
  rm -f "$bin/.stamp"
  # Stamped as the release builds stamp them (kubectl version, /version).
  k8s_version=$(sed -n 's/^[[:space:]]*k8s.io\/kubernetes \(v[^ ]*\).*/\1/p' tools/k8s/go.mod)
  major=${k8s_version#v} major=${major%%.*}
  minor=${k8s_version#v"$major".} minor=${minor%%.*}
  ldflags="-s -w" # test servers: no symbols or DWARF, a shorter link
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  done
  (cd tools/k8s && go build -trimpath -ldflags "$ldflags" -o "$bin/" ./cmd/etcd ./cmd/testpki \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl \
    sigs.k8s.io/kwok/cmd/kwok sigs.k8s.io/controller-tools/cmd/controller-gen) ||
    missing "the Kubernetes build" "tools/k8s did not build (it needs the Go module proxy the first time)"
  echo "$stamp" >"$bin/.stamp"
fi
# kwok's stages (what it does to nodes and pods) are not built in: the ones
# kwokctl gives a cluster (kustomize/stage/fast: nodes Ready with leases,
# pods Ready at once, deleted pods gone), from the module tools/k8s built.
if [ "$(cat "$bin/kwok-stages/.version" 2>/dev/null)" != "$stamp" ]; then
  stages=$(cd tools/k8s && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)/kustomize/stage
  rm -rf "$bin/kwok-stages" && mkdir -p "$bin/kwok-stages"
  for f in node/fast/node-initialize node/heartbeat-with-lease/node-heartbeat-with-lease \
    pod/fast/pod-ready pod/fast/pod-complete pod/fast/pod-delete; do
    cp "$stages/$f.yaml" "$bin/kwok-stages/" || missing "kwok's stages" "$stages/$f.yaml is not in the module cache"
  done
  echo "$stamp" >"$bin/kwok-stages/.version"
fi
if [ "${1:-}" = build ]; then
  step "" # prints the build's time
  echo "test-k8s: built into .cache/k8s/bin (build only) after $(($(date +%s) - t0))s"
  exit 0
fi
kubectl() { "$bin/kubectl" --kubeconfig "$run/kubeconfig" "$@"; }

# --- cluster -------------------------------------------------------------
pids=()
stop() {
  local rc=$?
  if [ "${KEEP:-}" = 1 ] && [ $rc -eq 0 ]; then
    echo "test-k8s: KEEP=1: the cluster keeps running; KUBECONFIG=$run/kubeconfig; stop: for p in \$(tac $run/pids); do kill \$p; sleep 1; done"
    return
  fi
  # One at a time, last started first: the API server before its etcd (it
  # would wait for etcd on its way out), and SIGKILL after 10s.
  local i n
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill "${pids[i]}" 2>/dev/null || continue
    for ((n = 0; n < 100; n++)); do
      kill -0 "${pids[i]}" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "${pids[i]}" 2>/dev/null || true
    wait "${pids[i]}" 2>/dev/null || true
  done
  if [ $rc -ne 0 ] && [ -d "$run/logs" ]; then
    for f in "$run"/logs/*.log; do
      echo "--- last lines of $f" >&2
      tail -n 15 "$f" >&2
    done
  fi
  printf 'test-k8s: %s after %ss\n' "$([ $rc -eq 0 ] && echo ok || echo FAILED)" $(($(date +%s) - t0))
}
trap stop EXIT
start() { # start NAME CMD...: in the background, output in logs/NAME.log
  local name=$1
  shift
  "$@" >"$run/logs/$name.log" 2>&1 &
  pids+=($!)
  echo $! >>"$run/pids"
}
wait_for() { # wait_for SECONDS WHAT CMD...
  local secs=$1 what=$2
  local until=$(($(date +%s) + secs))
  shift 2
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt $until ] || fail "$what: not within ${secs}s"
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null || fail "$what: a process exited (logs in $run/logs)"; done
    sleep 0.5
  done
}

step "etcd and kube-apiserver"
rm -rf "$run"
mkdir -p "$run/logs" "$run/pki"
"$bin/testpki" "$run/pki"
token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
echo "$token,cardwire-test-admin,cardwire-test-admin,system:masters" >"$run/pki/tokens.csv"
cat >"$run/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: test-k8s
    cluster:
      server: https://127.0.0.1:$api_port
      certificate-authority: $run/pki/ca.crt
users:
  - name: admin
    user:
      token: $token
contexts:
  - name: test-k8s
    context: {cluster: test-k8s, user: admin}
current-context: test-k8s
EOF
start etcd "$bin/etcd" --name test-k8s --data-dir "$run/etcd" --unsafe-no-fsync \
  --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
  --listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
  --initial-cluster "test-k8s=http://127.0.0.1:$etcd_peer"
start kube-apiserver "$bin/kube-apiserver" --etcd-servers "http://127.0.0.1:$etcd_port" \
  --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
  --tls-cert-file "$run/pki/server.crt" --tls-private-key-file "$run/pki/server.key" \
  --token-auth-file "$run/pki/tokens.csv" --authorization-mode Node,RBAC \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-account-key-file "$run/pki/sa.pub" --service-account-signing-key-file "$run/pki/sa.key" \
  --service-cluster-ip-range 10.96.0.0/16 --allow-privileged=false \
  --endpoint-reconciler-type none
wait_for 60 "the API server's /readyz" kubectl get --raw /readyz

step "controller-manager, scheduler, kwok, 3 nodes"
start kube-controller-manager "$bin/kube-controller-manager" --kubeconfig "$run/kubeconfig" \
  --bind-address 127.0.0.1 --secure-port "$kcm_port" --leader-elect=false \
  --service-account-private-key-file "$run/pki/sa.key" --root-ca-file "$run/pki/ca.crt" \
  --use-service-account-credentials --service-cluster-ip-range 10.96.0.0/16 \
  --node-monitor-grace-period 40s --controllers '*'
start kube-scheduler "$bin/kube-scheduler" --kubeconfig "$run/kubeconfig" \
  --bind-address 127.0.0.1 --secure-port "$sched_port" --leader-elect=false
stage_flags=()
for f in "$bin"/kwok-stages/*.yaml; do stage_flags+=(--config "$f"); done
start kwok "$bin/kwok" --kubeconfig "$run/kubeconfig" --server-address "127.0.0.1:$kwok_port" "${stage_flags[@]}" \
  --manage-all-nodes=false --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
  --node-lease-duration-seconds 40 --cidr 10.244.0.0/16 --node-ip 10.0.0.1
for i in 0 1 2; do
  cat <<EOF
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    kubernetes.io/hostname: kwok-node-$i
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    topology.kubernetes.io/zone: zone-$i
    type: kwok
status:
  allocatable: {cpu: "16", memory: 64Gi, pods: "110", ephemeral-storage: 100Gi}
  capacity: {cpu: "16", memory: 64Gi, pods: "110", ephemeral-storage: 100Gi}
---
EOF
done >"$run/nodes.yaml"
kubectl create -f "$run/nodes.yaml" >/dev/null
wait_for 60 "3 Ready kwok nodes" sh -c "[ \$('$bin/kubectl' --kubeconfig '$run/kubeconfig' get nodes --no-headers | grep -cw Ready) = 3 ]"
# The namespaces' default ServiceAccounts, which the ServiceAccount
# admission plugin wants before it admits a pod, come from the controller
# manager.
wait_for 60 "the default ServiceAccount" kubectl -n default get serviceaccount default

step "monitoring CRDs (controller-gen over prometheus-operator)"
mkdir -p "$run/crds"
"$bin/controller-gen" crd:allowDangerousTypes=true,maxDescLen=0 \
  paths=github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1 \
  output:crd:dir="$run/crds" >"$run/logs/controller-gen.log" 2>&1 ||
  fail "controller-gen: $(tail -n 5 "$run/logs/controller-gen.log")"
for crd in servicemonitors prometheusrules; do
  [ -f "$run/crds/monitoring.coreos.com_$crd.yaml" ] || fail "controller-gen wrote no CRD for $crd"
  kubectl apply --server-side --field-manager test-k8s --validate=strict --warnings-as-errors \
    -f "$run/crds/monitoring.coreos.com_$crd.yaml" >/dev/null
done
kubectl wait --for condition=Established --timeout 30s \
  crd/servicemonitors.monitoring.coreos.com crd/prometheusrules.monitoring.coreos.com >/dev/null

# --- apply ---------------------------------------------------------------
step "namespaces (restricted) and throwaway Secrets"
for ns in cardwire cardwire-dev cardwire-existing-nats; do
  kubectl create namespace "$ns" >/dev/null
  kubectl label namespace "$ns" pod-security.kubernetes.io/enforce=restricted \
    pod-security.kubernetes.io/warn=restricted >/dev/null
  wait_for 60 "the default ServiceAccount in $ns" kubectl -n "$ns" get serviceaccount default
done
printf 'workspaces: []\n' >"$run/workspaces.yaml"
echo 'throwaway' >"$run/nats.creds"
for ns in cardwire cardwire-existing-nats; do
  kubectl -n "$ns" create secret generic cardwire-workspaces --from-file "workspaces.yaml=$run/workspaces.yaml" >/dev/null
  kubectl -n "$ns" create secret tls webhook-receiver-tls --cert "$run/pki/server.crt" --key "$run/pki/server.key" >/dev/null
done
kubectl -n cardwire-existing-nats create secret generic cardwire-nats --from-file "nats.creds=$run/nats.creds" >/dev/null
# The NATS StatefulSet's claims (no StorageClass) bind to these.
for i in 0 1 2; do
  cat <<EOF
apiVersion: v1
kind: PersistentVolume
metadata:
  name: test-k8s-nats-$i
spec:
  capacity: {storage: 10Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  hostPath: {path: $run/volumes/nats-$i, type: DirectoryOrCreate}
---
EOF
done | kubectl create -f - >/dev/null

# existing-nats is production's variant (the same objects in namespace
# cardwire): it goes to a namespace of its own so that both are checked.
mkdir -p "$run/existing-nats"
cat >"$run/existing-nats/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: cardwire-existing-nats
resources:
  - $(realpath --relative-to "$run/existing-nats" deploy/k8s/overlays/existing-nats)
EOF

for dir in deploy/k8s/namespace deploy/k8s/overlays/dev deploy/k8s/overlays/production \
  deploy/k8s/nats "$run/existing-nats"; do
  name=${dir#"$root"/}
  [ "$name" != .cache/k8s/run/existing-nats ] || name="deploy/k8s/overlays/existing-nats into cardwire-existing-nats"
  step "apply -k ${name} (server-side, strict, no warnings)"
  if ! kubectl apply -k "$dir" --server-side --field-manager cardwire --validate=strict \
    --warnings-as-errors >"$run/logs/apply.log" 2>&1 || grep -qi 'warning' "$run/logs/apply.log"; then
    cat "$run/logs/apply.log" >&2
    fail "kubectl apply -k $name"
  fi
  sed 's/^/  /' "$run/logs/apply.log"
done

# --- rollout -------------------------------------------------------------
namespaces="cardwire-dev cardwire cardwire-existing-nats"
deployments() { kubectl -n "$1" get deployments -o name; }
rollout_all() { # rollout_all TIMEOUT: every Deployment (scaled to its HPA's minReplicas) and StatefulSet
  local ns d hpa min
  for ns in $namespaces; do
    for d in $(deployments "$ns"); do
      hpa=$(kubectl -n "$ns" get hpa -o jsonpath="{range .items[?(@.spec.scaleTargetRef.name=='${d#*/}')]}{.spec.minReplicas}{end}")
      if [ -n "$hpa" ]; then
        wait_for "$1" "$ns/$d at its autoscaler's $hpa replicas" \
          sh -c "[ \"\$('$bin/kubectl' --kubeconfig '$run/kubeconfig' -n $ns get $d -o jsonpath='{.spec.replicas}')\" -ge $hpa ]"
      fi
      kubectl -n "$ns" rollout status "$d" --timeout "${1}s" >/dev/null || fail "rollout of $ns/$d"
    done
    for s in $(kubectl -n "$ns" get statefulsets -o name); do
      kubectl -n "$ns" rollout status "$s" --timeout "${1}s" >/dev/null || fail "rollout of $ns/$s"
    done
  done
}
pods_per_node() {
  kubectl get pods -A -o jsonpath='{range .items[*]}{.metadata.namespace}/{.metadata.labels.app\.kubernetes\.io/name} {.spec.nodeName} {.status.phase}{"\n"}{end}' |
    sort | uniq -c | sed 's/^ */  /'
}
step "rollout on the kwok nodes"
rollout_all 180
pods_per_node

step "drain kwok-node-0 (PodDisruptionBudgets hold)"
kubectl drain kwok-node-0 --ignore-daemonsets --delete-emptydir-data --timeout 180s >"$run/logs/drain.log" 2>&1 ||
  { cat "$run/logs/drain.log" >&2; fail "kubectl drain kwok-node-0"; }
# Every Deployment is whole again on the other two nodes; NATS keeps 2 of 3
# (its replacement stays Pending: DoNotSchedule spread over 3 nodes, one
# cordoned), and its budget now refuses the next eviction.
for ns in $namespaces; do
  for d in $(deployments "$ns"); do
    kubectl -n "$ns" rollout status "$d" --timeout 120s >/dev/null || fail "$ns/$d after the drain"
  done
done
healthy=$(kubectl -n cardwire get pdb nats -o jsonpath='{.status.currentHealthy}/{.status.expectedPods} allowed={.status.disruptionsAllowed}')
echo "  PDB cardwire/nats: healthy $healthy"
[ "$healthy" = "2/3 allowed=0" ] || fail "PDB nats after the drain: $healthy (want 2/3 allowed=0)"
if kubectl drain kwok-node-1 --pod-selector app.kubernetes.io/name=nats --timeout 15s \
  --ignore-daemonsets --delete-emptydir-data \
  >"$run/logs/drain-1.log" 2>&1; then
  fail "a second NATS pod was evicted while one is down"
fi
grep -q 'disruption budget' "$run/logs/drain-1.log" || { cat "$run/logs/drain-1.log" >&2; fail "second drain failed, not on the PDB"; }
echo "  the next NATS eviction is refused: $(grep -m1 -o 'Cannot evict pod.*budget' "$run/logs/drain-1.log")"
pods_per_node
kubectl uncordon kwok-node-1 kwok-node-0 >/dev/null
rollout_all 120

step "rollout restart of each Deployment"
for ns in $namespaces; do
  for d in $(deployments "$ns"); do
    kubectl -n "$ns" rollout restart "$d" >/dev/null
  done
done
rollout_all 180
step done
