#!/usr/bin/env bash
# Builds the local base image for offline image builds (make image
# IMAGE_BASE=local, make test-image): what cardwire's static binaries need
# from distroless/static:nonroot and nothing else — the CA certificates of
# this machine (Debian's /etc/ssl/certs/ca-certificates.crt), /etc/passwd and
# /etc/group with root, nobody and nonroot (65532), /home/nonroot and /tmp,
# user 65532:65532. One layer appended with crane to an empty image, every
# timestamp fixed: the same certificates give the same digest.
#
#   scripts/base-image.sh        writes the OCI layout .cache/base, prints its digest
#
# Variables: BASE_OUT (.cache/base), IMAGE_PLATFORM (linux/<go env GOARCH>),
# CA_FILE (/etc/ssl/certs/ca-certificates.crt).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/image-lib.sh

out=${BASE_OUT:-.cache/base}
platform=${IMAGE_PLATFORM:-$(default_platform)}
ca=${CA_FILE:-/etc/ssl/certs/ca-certificates.crt}

need "scripts/base-image.sh" crane
if [ ! -s "$ca" ]; then
  echo "scripts/base-image.sh: no CA bundle at $ca (apt-get install ca-certificates, or CA_FILE=)" >&2
  exit 1
fi

tmp=$(mktemp -d)
trap 'stop_registry; rm -rf "$tmp"' EXIT

# The tree, with every mode set here (not from the umask).
root=$tmp/root
mkdir -p "$root/etc/ssl/certs" "$root/home/nonroot" "$root/tmp"
cp "$ca" "$root/etc/ssl/certs/ca-certificates.crt"
cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
cat >"$root/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
nonroot:x:65532:
EOF
chmod 0755 "$root/etc" "$root/etc/ssl" "$root/etc/ssl/certs" "$root/home"
chmod 0644 "$root/etc/passwd" "$root/etc/group" "$root/etc/ssl/certs/ca-certificates.crt"
chmod 1777 "$root/tmp"
chmod 0700 "$root/home/nonroot"

# One tar, sorted, mtime 0, owned by root except /home/nonroot (65532).
tar_opts=(--format=ustar --mtime=@0 --numeric-owner)
tar -cf "$tmp/layer.tar" "${tar_opts[@]}" --sort=name --owner=0 --group=0 -C "$root" etc tmp --no-recursion home
tar -rf "$tmp/layer.tar" "${tar_opts[@]}" --owner=65532 --group=65532 -C "$root" --no-recursion home/nonroot

start_registry
crane append --oci-empty-base -f "$tmp/layer.tar" -t "$REG/base:layer" >/dev/null 2>"$tmp/log" || { cat "$tmp/log" >&2; exit 1; }
ref=$(crane mutate "$REG/base:layer" --set-platform "$platform" --user 65532:65532 --workdir /home/nonroot \
  -e PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  -e SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
  -t "$REG/base:latest" 2>"$tmp/log") || { cat "$tmp/log" >&2; exit 1; }
digest=${ref##*@}

# Replace the layout whole: crane pull appends to an existing one.
rm -rf "$tmp/layout"
crane pull --format=oci "$REG/base@$digest" "$tmp/layout" 2>"$tmp/log" || { cat "$tmp/log" >&2; exit 1; }
mkdir -p "$(dirname "$out")"
rm -rf "$out"
mv "$tmp/layout" "$out"
[ "$(layout_digest "$out")" = "$digest" ] || { echo "scripts/base-image.sh: $out does not hold $digest" >&2; exit 1; }
echo "local base $platform ($(sha256sum <"$ca" | cut -c1-12) CA bundle) in $out: $digest" >&2
echo "$digest"
