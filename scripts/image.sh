#!/usr/bin/env bash
# Builds both images with ko (make image): webhook-receiver and worker, each
# a static Go build (-trimpath, CGO off, -s -w, version and commit stamped
# with -ldflags, see .ko.yaml) on the base, with the operator CLI at
# /cardwire, running as 65532. No Docker engine is needed. The images are
# reproducible: the same sources, base, Go, ko and crane give the same
# digests (every timestamp is SOURCE_DATE_EPOCH, the commit's time).
#
# Out, under IMAGE_OUT (.cache/images), for each binary B:
#   B/          OCI layout (crane push .cache/images/B REF; podman pull oci:…)
#   B.tar       tarball tagged $IMAGE_PREFIX/B:$VERSION (docker load, podman load)
#   sbom/B-<os>-<arch>.spdx.json  ko's SPDX SBOM of the Go binary
#   digests     B and its manifest digest, one a line
#
# Variables (make image VAR=…):
#   VERSION, COMMIT    stamped into the binaries; VERSION tags the images
#   IMAGE_PREFIX       repository prefix (ghcr.io/cardwire)
#   IMAGE_BASE         the base: a reference (default: .ko.yaml's
#                      defaultBaseImage, the public distroless/static
#                      nonroot), or "local" for scripts/base-image.sh's
#                      layout in .cache/base (offline)
#   IMAGE_PLATFORM     linux/<go env GOARCH>; linux/amd64, linux/arm64, …
#   IMAGE_PUSH         true: also push $IMAGE_PREFIX/B:$VERSION (and the SBOM)
#   IMAGE_OUT          .cache/images (relative, lower case)
#
# How /cardwire gets in: crane appends a layer holding it to the base (on a
# throwaway registry on loopback), the result is put into ko's cache
# (KOCACHE=.cache/ko, an OCI layout) and named by digest, so ko builds on
# it without fetching anything.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/image-lib.sh

version=${VERSION:-dev}
commit=${COMMIT:-unknown}
prefix=${IMAGE_PREFIX:-ghcr.io/cardwire}
base=${IMAGE_BASE:-$(sed -n 's/^defaultBaseImage: *//p' .ko.yaml)}
platform=${IMAGE_PLATFORM:-$(default_platform)}
push=${IMAGE_PUSH:-false}
out=${IMAGE_OUT:-.cache/images}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
binaries=(webhook-receiver worker)
case $push in true | false) ;; *) echo "IMAGE_PUSH must be true or false, got $push" >&2; exit 1 ;; esac
# ko names a layout's image after its path, which must then be a valid
# repository name: relative to the checkout, lower case.
case $out in /* | *[!a-z0-9_./-]*) echo "IMAGE_OUT must be a lower-case path relative to the checkout (ko names the image after it), got $out" >&2; exit 1 ;; esac

need "make image" ko crane
warn_versions

tmp=$(mktemp -d)
trap 'stop_registry; rm -rf "$tmp"' EXIT
start_registry

# The base, by digest.
if [ "$base" = local ]; then
  ./scripts/base-image.sh >/dev/null
  base_ref=$(crane push .cache/base "$REG/base" 2>"$tmp/log") || { cat "$tmp/log" >&2; exit 1; }
  base_name="scripts/base-image.sh@${base_ref##*@}"
else
  base_digest=$(crane digest --platform "$platform" "$base" 2>"$tmp/log") || {
    cat "$tmp/log" >&2
    echo "make image: cannot read the base $base (offline? make image IMAGE_BASE=local builds on scripts/base-image.sh's base)" >&2
    exit 1
  }
  base_ref=${base%@*}@$base_digest
  base_name=$base_ref
fi

# The operator CLI, as built into the Dockerfile's images.
goos=${platform%%/*}
goarch=${platform#*/}
goarch=${goarch%%/*}
mkdir -p "$tmp/cli"
CGO_ENABLED=0 GOOS=$goos GOARCH=$goarch go build -trimpath \
  -ldflags "-s -w -X github.com/cardwire/cardwire/internal/lifecycle.version=$version -X github.com/cardwire/cardwire/internal/lifecycle.commit=$commit" \
  -o "$tmp/cli/cardwire" ./cmd/cardwire
chmod 0755 "$tmp/cli/cardwire"
tar -cf "$tmp/cli.tar" --format=ustar --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner -C "$tmp/cli" cardwire
with_cli=$(crane append --platform "$platform" -b "$base_ref" -f "$tmp/cli.tar" -t "$REG/base-with-cli" 2>"$tmp/log") ||
  { cat "$tmp/log" >&2; exit 1; }

# Into ko's cache, where a base named by digest is found without a fetch.
export KOCACHE=$PWD/.cache/ko
mkdir -p "$KOCACHE"
rm -rf "$KOCACHE/img"
crane pull --format=oci "$with_cli" "$KOCACHE/img" 2>"$tmp/log" || { cat "$tmp/log" >&2; exit 1; }
export KO_DEFAULTBASEIMAGE=cardwire.invalid/base-with-cli@${with_cli##*@}

mkdir -p "$out"
rm -rf "$out/sbom"
: >"$tmp/digests"
for b in "${binaries[@]}"; do
  rm -rf "${out:?}/$b" "$out/$b.tar"
  ref=$(VERSION=$version COMMIT=$commit KO_DOCKER_REPO=$prefix/$b \
    ko build "./cmd/$b" --bare --tags "$version" --platform "$platform" --push="$push" \
    --oci-layout-path "$out/$b" --tarball "$out/$b.tar" --sbom-dir "$out/sbom" \
    --image-label "org.opencontainers.image.version=$version" \
    --image-label "org.opencontainers.image.revision=$commit" \
    --image-label "io.cardwire.image.base=$base_name" \
    2>"$tmp/log") || { cat "$tmp/log" >&2; exit 1; }
  d=$(layout_digest "$out/$b")
  if [ -z "$d" ] || [ "${ref##*@}" != "$d" ]; then cat "$tmp/log" >&2; echo "make image: ko said $ref, the layout holds ${d:-nothing}" >&2; exit 1; fi
  echo "$b $d" >>"$tmp/digests"
  echo "$prefix/$b:$version@$d ($platform, on $base_name)$([ "$push" = true ] && echo ", pushed")"
done
mv "$tmp/digests" "$out/digests"
echo "in $out: OCI layouts ${binaries[*]}, tarballs, sbom/; commit $commit, SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH" >&2
