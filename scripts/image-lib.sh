# shellcheck shell=bash
# Sourced by scripts/base-image.sh, image.sh and test-image.sh: the pinned
# tool versions, the tool check, and a throwaway registry on loopback that
# crane needs (crane append and mutate read and write registries only; the
# results are copied into OCI layouts under .cache).

# The versions the images are reproducible with (a digest is the same for
# the same sources, Go, ko and crane). ko v0.19.1 is the first that builds
# with Go 1.26.
KO_VERSION=v0.19.1
CRANE_VERSION=v0.22.1

# go install puts ko and crane here; it may not be on PATH.
PATH="$PATH:$(go env GOBIN 2>/dev/null):$(go env GOPATH 2>/dev/null)/bin"

# install_hint TOOL prints how to install TOOL.
install_hint() {
  case $1 in
  ko) echo "go install github.com/google/ko@$KO_VERSION" ;;
  crane) echo "go install github.com/google/go-containerregistry/cmd/crane@$CRANE_VERSION" ;;
  podman | runc) echo "apt-get install podman runc" ;;
  curl) echo "apt-get install curl" ;;
  *) echo "install $1" ;;
  esac
}

# need WHAT TOOL...: fails, naming each missing tool and how to install it.
# Under CI=true a missing tool is a failure too; the message says so.
need() {
  local what=$1 missing=() t
  shift
  for t in "$@"; do
    command -v "$t" >/dev/null 2>&1 || missing+=("$t")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  {
    if [ "${CI:-}" = true ]; then
      echo "$what: ${missing[*]} missing on CI (.ci/run must install them):"
    else
      echo "$what needs ${missing[*]}; install with:"
    fi
    for t in "${missing[@]}"; do echo "  $(install_hint "$t")"; done
  } >&2
  exit 1
}

# warn_versions: a ko or crane other than the pinned one still builds, but
# not necessarily the same digests.
warn_versions() {
  local v
  v=$(ko version 2>/dev/null || true)
  [ "$v" = "${KO_VERSION#v}" ] || [ "$v" = "$KO_VERSION" ] ||
    echo "note: ko $v, not $KO_VERSION: the digests may differ from another machine's ($(install_hint ko))" >&2
  v=$(crane version 2>/dev/null || true)
  [ "$v" = "${CRANE_VERSION#v}" ] || [ "$v" = "$CRANE_VERSION" ] ||
    echo "note: crane $v, not $CRANE_VERSION: the digests may differ from another machine's ($(install_hint crane))" >&2
}

# start_registry: an in-memory registry on 127.0.0.1 (a free port) for the
# lifetime of the calling script; sets REG to host:port. The caller's EXIT
# trap must call stop_registry.
start_registry() {
  local log port=
  log=$(mktemp)
  crane registry serve --address 127.0.0.1:0 2>"$log" &
  REG_PID=$!
  for _ in $(seq 100); do
    port=$(sed -n 's/.*serving on port \([0-9][0-9]*\).*/\1/p' "$log")
    [ -n "$port" ] && break
    kill -0 "$REG_PID" 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$port" ]; then
    echo "crane registry serve did not start:" >&2
    cat "$log" >&2
    rm -f "$log"
    exit 1
  fi
  rm -f "$log"
  # shellcheck disable=SC2034 # used by the sourcing script
  REG=127.0.0.1:$port
}

stop_registry() {
  if [ -n "${REG_PID:-}" ]; then
    kill "$REG_PID" 2>/dev/null || true
    wait "$REG_PID" 2>/dev/null || true
    REG_PID=
  fi
}

# layout_digest DIR prints the digest of the one image in the OCI layout DIR.
layout_digest() {
  sed -n 's/.*"digest": *"\(sha256:[0-9a-f]\{64\}\)".*/\1/p' "$1/index.json" | head -n 1
}

# default_platform: linux and the Go toolchain's architecture.
default_platform() { echo "linux/$(go env GOARCH)"; }
