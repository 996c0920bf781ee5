#!/bin/sh
# Runs the local quick start: two demo upstreams (Postfacto 4.1.0 on :3001 and
# 4.2.0 on :3002) and build/switchyard with examples/local.yaml in the foreground.
# Without SWITCHYARD_BIN it first installs the Debian packages (scripts/install-deps.sh)
# and builds, so it is the one command a new machine needs.
# Ctrl-C stops everything this script started.
set -eu

cd "$(dirname "$0")/.."
BIN=${SWITCHYARD_BIN:-build/switchyard}
CONF=${SWITCHYARD_CONF:-examples/local.yaml}
PY=${PYTHON:-python3}

# On a fresh machine: install the Debian packages and build first (quick when already done).
if [ -z "${SWITCHYARD_BIN:-}" ]; then
    scripts/install-deps.sh
    make -s all
fi
if [ ! -x "$BIN" ]; then
    echo "demo: $BIN not found; build it first with: make" >&2
    exit 1
fi

# A port is taken when something accepts a connection on it.
port_in_use() {
    "$PY" - "$1" <<'PYEOF'
import socket, sys
s = socket.socket()
s.settimeout(0.5)
sys.exit(0 if s.connect_ex(("127.0.0.1", int(sys.argv[1]))) == 0 else 1)
PYEOF
}

busy=""
for p in 3001 3002 8080 9901; do
    if port_in_use "$p"; then busy="$busy $p"; fi
done
if [ -n "$busy" ]; then
    echo "demo: port(s)$busy on 127.0.0.1 already in use; stop what listens there" >&2
    echo "      (see: ss -ltnp | grep -E ':(3001|3002|8080|9901) ')" >&2
    exit 1
fi

pids=""
cleanup() {
    for pid in $pids; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in $pids; do
        wait "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$PY" examples/demo-upstream.py --port 3001 --name 4.1.0 &
pids="$pids $!"
"$PY" examples/demo-upstream.py --port 3002 --name 4.2.0 &
pids="$pids $!"

# wait (up to 5 s) until both upstreams accept connections
i=0
until port_in_use 3001 && port_in_use 3002; do
    i=$((i + 1))
    if [ "$i" -gt 50 ]; then
        echo "demo: the demo upstreams did not start" >&2
        exit 1
    fi
    sleep 0.1
done

cat <<'TXT'

Switchyard demo: http://127.0.0.1:8080/  (admin: http://127.0.0.1:9901/metrics)
Try, in another terminal:

  curl -H 'X-Postfacto-Version: 4.1.0' http://127.0.0.1:8080/
  curl 'http://127.0.0.1:8080/?postfacto_version=4.1.0' -i
  curl http://127.0.0.1:8080/

Ctrl-C stops the gateway and both demo upstreams.

TXT

"$BIN" -c "$CONF" &
pids="$pids $!"
gw=$!
set +e
wait "$gw"
status=$?
set -e
exit "$status"
