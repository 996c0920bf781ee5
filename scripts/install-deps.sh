#!/bin/sh
# Installs every Debian package Switchyard needs to build, test, fuzz and benchmark.
# Usage: scripts/install-deps.sh   (as root, or with sudo available)
set -eu
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
PKGS="build-essential make pkg-config clang libclang-rt-14-dev
libssl-dev libyaml-dev libcurl4-openssl-dev libjansson-dev libcriterion-dev libnghttp2-dev liburing-dev
python3 python3-pytest python3-websockets python3-yaml python3-h2 nghttp2-client curl openssl
ca-certificates
pebble lego testssl.sh nginx-light haproxy caddy h2o wrk shellcheck valgrind nodejs
podman runc debootstrap chromium"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# nginx-light or any other nginx flavour will do.
if echo "$missing" | grep -q nginx-light && command -v nginx >/dev/null 2>&1; then
    missing=$(echo "$missing" | sed 's/nginx-light//')
fi
if [ -n "$(echo "$missing" | tr -d ' ')" ]; then
    echo "install-deps: installing:$missing"
    $SUDO apt-get update -q
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $missing
fi
# Debian starts packaged daemons on install; the tests and benchmarks run their own copies.
for svc in nginx haproxy caddy; do
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
        $SUDO systemctl stop "$svc" || true
    fi
done
command -v npm >/dev/null 2>&1 || echo "install-deps: note: npm not found; the deploy checks need node and npm"
command -v kubectl >/dev/null 2>&1 || echo "install-deps: note: kubectl not found; the deploy checks need it to render manifests"
echo "install-deps: ok"
