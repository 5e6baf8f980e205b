#!/usr/bin/env bash
# The main job, on a fresh Debian machine (as root): install the real parts,
# start a registry on 127.0.0.1:5000 with a busybox base image made from
# Debian's busybox-static (amd64 and arm64), and build the example monorepo
# on bakery's embedded engine for linux/amd64 and linux/arm64.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends runc docker-registry skopeo busybox-static qemu-user-static >/dev/null
  if [ ! -x /opt/bakery-test/arm64/bin/busybox ]; then
    dpkg --add-architecture arm64 && apt-get update -qq
    tmp=$(mktemp -d)
    (cd "$tmp" && apt-get download -qq busybox-static:arm64 >/dev/null 2>&1 \
      && dpkg-deb -x busybox-static_*_arm64.deb root && mkdir -p /opt/bakery-test/arm64/bin \
      && cp root/bin/busybox /opt/bakery-test/arm64/bin/busybox) || true
    rm -rf "$tmp"
  fi
fi

REG=127.0.0.1:5000
if ! python3 -c "import socket; socket.create_connection(('127.0.0.1', 5000), 1)" 2>/dev/null; then
  mkdir -p /tmp/bakery-example-registry
  cat > /tmp/bakery-example-registry/config.yml <<YML
version: 0.1
storage:
  filesystem:
    rootdirectory: /tmp/bakery-example-registry/data
http:
  addr: $REG
YML
  docker-registry serve /tmp/bakery-example-registry/config.yml >/tmp/bakery-example-registry/log 2>&1 &
  for _ in $(seq 50); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', 5000), 1)" 2>/dev/null && break
    sleep 0.1
  done
fi

PLATFORMS=("linux/amd64=$(command -v busybox)")
SET=(--set '*.platform=linux/amd64')
if [ -x /opt/bakery-test/arm64/bin/busybox ] && command -v qemu-aarch64-static >/dev/null; then
  PLATFORMS+=("linux/arm64=/opt/bakery-test/arm64/bin/busybox")
  SET=()
fi
python3 examples/tools/busybox_image.py "$REG/bakery/busybox:latest" "${PLATFORMS[@]}"

cd examples/monorepo
bakery plan "${SET[@]}"
bakery run "${SET[@]}"
for t in api worker web-plain web-debug; do
  printf '%s: ' "$t"
  skopeo inspect --raw "oci-archive:out/$t.tar:dev" | python3 -c \
    'import json,sys; d=json.load(sys.stdin); print(", ".join(m["platform"]["os"]+"/"+m["platform"]["architecture"] for m in d.get("manifests", [])) or "one platform")'
done
